import { assertEquals } from "../helpers/assert.ts";
import { createVerifiedMemo } from "../../lib/verified_memo.ts";

Deno.test("createVerifiedMemo() checks each exact input once, remembers only passes, and forgets the oldest", async () => {
  const memo = createVerifiedMemo(2);
  let checks = 0;
  const check = (ok: boolean) => () => {
    checks++;
    return Promise.resolve(ok);
  };
  assertEquals(await memo.verified(["id", "a"], check(true)), true);
  assertEquals(await memo.verified(["id", "a"], check(false)), true, "remembered");
  assertEquals(checks, 1);
  // Parts cannot move across their boundaries, and any change is checked again.
  assertEquals(await memo.verified(["ida", ""], check(false)), false);
  assertEquals(await memo.verified(["id", "a "], check(false)), false);
  assertEquals(
    await memo.verified(["id", "a "], check(false)),
    false,
    "a failure is not remembered",
  );
  assertEquals([checks, memo.size()], [4, 1]);
  await memo.verified(["b"], check(true));
  await memo.verified(["c"], check(true));
  assertEquals(memo.size(), 2);
  assertEquals(await memo.verified(["id", "a"], check(false)), false, "the oldest was forgotten");
});
