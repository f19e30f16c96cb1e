/**
 * web/rs256.ts against crypto.subtle.verify, the reference it replaces: over
 * 100,000 seeded (KRT_FUZZ_SEED) signatures, valid and mutated (bit flips,
 * truncation, extension, leading zeros, another key or message, s ≥ n, s of 0
 * or 1, other hashes, PSS, and hand-made encodings that a lenient parser of the
 * decrypted block would accept), both must give the same answer every time.
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import { createRandom, fuzzSeed } from "../helpers/random.ts";
import { type Rs256Key, rs256KeyFromJwk, verifyRs256 } from "../../web/rs256.ts";

const RUNS = 100_000;
const PKCS1 = "RSASSA-PKCS1-v1_5";

interface TestKey {
  bits: number;
  publicKey: CryptoKey;
  privateKey: CryptoKey;
  fast: Rs256Key;
  n: bigint;
  d: bigint;
  k: number;
  /** Valid (message, signature) pairs. */
  signed: [Uint8Array, Uint8Array][];
  /** Signatures of the messages with s^e mod n of a chosen encoding. */
  crafted: [Uint8Array, Uint8Array, string][];
}

const b64uToBigInt = (text: string) => {
  const bin = atob(
    text.replace(/-/g, "+").replace(/_/g, "/") + "==".slice(0, (4 - text.length % 4) % 4),
  );
  return BigInt(
    "0x" + Array.from(bin, (c) => c.charCodeAt(0).toString(16).padStart(2, "0")).join(""),
  );
};
const toBytes = (value: bigint, length: number) => {
  const hex = value.toString(16).padStart(length * 2, "0");
  return Uint8Array.from(
    { length: hex.length / 2 },
    (_, i) => parseInt(hex.slice(2 * i, 2 * i + 2), 16),
  );
};
const hexOf = (bytes: Uint8Array) =>
  Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
function modPow(base: bigint, exp: bigint, mod: bigint): bigint {
  let result = 1n;
  let b = base % mod;
  for (let e = exp; e > 0n; e >>= 1n) {
    if (e & 1n) result = (result * b) % mod;
    b = (b * b) % mod;
  }
  return result;
}
async function sha(name: string, data: Uint8Array): Promise<string> {
  return hexOf(new Uint8Array(await crypto.subtle.digest(name, data as BufferSource)));
}

// DigestInfo prefixes (RFC 8017 §9.2 note 1) and variants a lenient reader accepts.
const DI_SHA256 = "3031300d060960864801650304020105000420";
const DI_SHA256_NO_NULL = "302f300b0609608648016503040201" + "0420";
const DI_SHA1 = "3021300906052b0e03021a05000414";
const DI_SHA384 = "3041300d060960864801650304020205000430";

/** Encodings of `message` for a k-octet modulus: the right one first, then wrong ones. */
async function encodings(message: Uint8Array, k: number): Promise<[string, string][]> {
  const h256 = await sha("SHA-256", message);
  const h1 = await sha("SHA-1", message);
  const h384 = await sha("SHA-384", message);
  const pad = (t: string, ps = "ff", block = "01") =>
    "00" + block + ps.repeat(k - 3 - t.length / 2) + "00" + t;
  const t = DI_SHA256 + h256;
  const short = "00" + "01" + "ff".repeat(8) + "00" + t;
  return [
    ["valid encoding", pad(t)],
    ["SHA-256 DigestInfo without NULL parameters", pad(DI_SHA256_NO_NULL + h256)],
    ["SHA-1 DigestInfo", pad(DI_SHA1 + h1)],
    ["SHA-384 DigestInfo", pad(DI_SHA384 + h384)],
    ["block type 02", pad(t, "ff", "02")],
    ["padding of 0xfe", pad(t, "fe")],
    ["short padding, garbage after the hash", short + "ab".repeat(k - short.length / 2)],
    ["hash of another message", pad(DI_SHA256 + "00".repeat(32))],
    ["no leading zero (shifted)", "01" + "ff".repeat(k - 3 - t.length / 2) + "00" + t + "00"],
    ["DigestInfo with a long-form length", pad("30813100" + DI_SHA256.slice(4) + h256)],
  ];
}

async function makeKey(bits: number, rnd: ReturnType<typeof createRandom>): Promise<TestKey> {
  const { publicKey, privateKey } = await crypto.subtle.generateKey(
    {
      name: PKCS1,
      modulusLength: bits,
      publicExponent: new Uint8Array([1, 0, 1]),
      hash: "SHA-256",
    },
    true,
    ["sign", "verify"],
  ) as CryptoKeyPair;
  const pub = await crypto.subtle.exportKey("jwk", publicKey);
  const priv = await crypto.subtle.exportKey("jwk", privateKey);
  const fast = rs256KeyFromJwk(pub);
  assert(fast, `a ${bits}-bit key is within the fast verifier's terms`);
  const n = b64uToBigInt(pub.n!);
  const d = b64uToBigInt(priv.d!);
  const signed: [Uint8Array, Uint8Array][] = [];
  for (let i = 0; i < 24; i++) {
    const message = Uint8Array.from({ length: 1 + rnd.int(300) }, () => rnd.int(256));
    const sig = new Uint8Array(
      await crypto.subtle.sign(PKCS1, privateKey, message as BufferSource),
    );
    signed.push([message, sig]);
  }
  const crafted: [Uint8Array, Uint8Array, string][] = [];
  for (const [message] of signed.slice(0, 3)) {
    for (const [name, em] of await encodings(message, fast.k)) {
      const m = BigInt("0x" + em);
      if (m >= n) continue;
      crafted.push([message, toBytes(modPow(m, d, n), fast.k), name]);
    }
  }
  return { bits, publicKey, privateKey, fast, n, d, k: fast.k, signed, crafted };
}

Deno.test("rs256KeyFromJwk() takes e=65537 and odd moduli of 2048 to 8192 bits only", async () => {
  const { publicKey } = await crypto.subtle.generateKey(
    {
      name: PKCS1,
      modulusLength: 2048,
      publicExponent: new Uint8Array([1, 0, 1]),
      hash: "SHA-256",
    },
    true,
    ["sign", "verify"],
  ) as CryptoKeyPair;
  const jwk = await crypto.subtle.exportKey("jwk", publicKey);
  assertEquals(rs256KeyFromJwk(jwk)?.k, 256);
  assertEquals(rs256KeyFromJwk({ ...jwk, n: "AAAA" + jwk.n })?.k, 256, "leading zeros add nothing");
  assertEquals(rs256KeyFromJwk({ ...jwk, e: "Aw" }), undefined, "e = 3");
  assertEquals(rs256KeyFromJwk({ ...jwk, e: "AQAC" }), undefined, "e = 65538");
  assertEquals(rs256KeyFromJwk({ ...jwk, n: jwk.n!.slice(0, 170) }), undefined, "1020 bits");
  assertEquals(rs256KeyFromJwk({ ...jwk, n: jwk.n!.slice(0, -1) + "A" }), undefined, "even");
  assertEquals(rs256KeyFromJwk({ ...jwk, n: "not base64url!" }), undefined);
  assertEquals(rs256KeyFromJwk({ e: jwk.e }), undefined);
});

Deno.test(`security: web/rs256.ts answers as crypto.subtle.verify does over ${RUNS} signatures (seed ${fuzzSeed()})`, async () => {
  const rnd = createRandom(fuzzSeed() + 11);
  const keys = [
    await makeKey(2048, rnd),
    await makeKey(2048, rnd),
    await makeKey(3072, rnd),
    await makeKey(4096, rnd),
  ];
  // Another hash and another scheme with the same key material.
  const first = keys[0];
  const privJwk = await crypto.subtle.exportKey("jwk", first.privateKey);
  const other: Uint8Array[] = [];
  for (const algorithm of [{ name: PKCS1, hash: "SHA-384" }, { name: PKCS1, hash: "SHA-512" }]) {
    const key = await crypto.subtle.importKey(
      "jwk",
      { ...privJwk, alg: undefined },
      algorithm,
      false,
      [
        "sign",
      ],
    );
    for (const [message] of first.signed.slice(0, 4)) {
      other.push(new Uint8Array(await crypto.subtle.sign(PKCS1, key, message as BufferSource)));
    }
  }
  const pss = await crypto.subtle.importKey(
    "jwk",
    { ...privJwk, alg: undefined },
    { name: "RSA-PSS", hash: "SHA-256" },
    false,
    ["sign"],
  );
  for (const [message] of first.signed.slice(0, 4)) {
    other.push(
      new Uint8Array(
        await crypto.subtle.sign({ name: "RSA-PSS", saltLength: 32 }, pss, message as BufferSource),
      ),
    );
  }

  const stats = new Map<string, { cases: number; valid: number }>();
  const note = (kind: string, valid: boolean) => {
    const s = stats.get(kind) ?? { cases: 0, valid: 0 };
    s.cases++;
    if (valid) s.valid++;
    stats.set(kind, s);
  };
  const flip = (bytes: Uint8Array) => {
    const copy = bytes.slice();
    const bit = rnd.int(copy.length * 8);
    copy[bit >> 3] ^= 1 << (bit & 7);
    return copy;
  };

  /** One case: which key verifies, which message, which signature bytes. */
  const draw = (): [string, TestKey, Uint8Array, Uint8Array] => {
    // Mostly 2048-bit keys (GitHub's), which also keeps the run short.
    const key = rnd.int(10) < 8 ? keys[rnd.int(2)] : keys[2 + rnd.int(2)];
    const [message, sig] = rnd.pick(key.signed);
    const kind = rnd.int(13);
    switch (kind) {
      case 0:
        return ["valid", key, message, sig];
      case 1:
        return ["signature bit flip", key, message, flip(sig)];
      case 2:
        return ["message bit flip", key, flip(message), sig];
      case 3: {
        const cut = 1 + rnd.int(Math.min(8, sig.length - 1));
        return ["truncated", key, message, rnd.int(2) ? sig.slice(cut) : sig.slice(0, -cut)];
      }
      case 4: {
        const longer = new Uint8Array(sig.length + 1 + rnd.int(3));
        const front = rnd.int(2) === 0;
        longer.set(sig, front ? longer.length - sig.length : 0);
        return [front ? "leading zeros" : "trailing bytes", key, message, longer];
      }
      case 5:
        return ["another key", rnd.pick(keys.filter((k) => k !== key)), message, sig];
      case 6: {
        const [otherMessage] = rnd.pick(key.signed.filter(([m]) => m !== message));
        return ["another message", key, otherMessage, sig];
      }
      case 7: {
        const choices = [
          key.n,
          key.n + 1n + BigInt(rnd.int(1 << 30)),
          (1n << BigInt(8 * key.k)) - 1n,
        ];
        const s = rnd.pick(choices);
        const plus = BigInt("0x" + hexOf(sig)) + key.n;
        const pick = rnd.int(2) === 0 || plus >= 1n << BigInt(8 * key.k) ? s : plus;
        return ["s >= n", key, message, toBytes(pick, key.k)];
      }
      case 8:
        return [
          "s = 0, 1 or n - 1",
          key,
          message,
          toBytes(rnd.pick([0n, 1n, key.n - 1n]), key.k),
        ];
      case 9: {
        const [craftedMessage, craftedSig, name] = rnd.pick(key.crafted);
        return [`crafted: ${name}`, key, craftedMessage, craftedSig];
      }
      case 10:
        return ["other hash or PSS", first, rnd.pick(first.signed.slice(0, 4))[0], rnd.pick(other)];
      case 11: {
        const random = Uint8Array.from({ length: key.k }, () => rnd.int(256));
        random[0] = rnd.int(2) ? 0 : random[0];
        return ["random bytes", key, message, random];
      }
      default: {
        const stripped = sig[0] === 0 ? sig.slice(1) : sig.slice();
        if (sig[0] !== 0) stripped[0] = 0; // a leading zero in place of the top byte
        return ["leading byte zeroed or stripped", key, message, stripped];
      }
    }
  };

  const BATCH = 64;
  for (let done = 0; done < RUNS; done += BATCH) {
    const cases = Array.from({ length: Math.min(BATCH, RUNS - done) }, draw);
    const reference = await Promise.all(
      cases.map(([, key, message, sig]) =>
        crypto.subtle.verify(PKCS1, key.publicKey, sig as BufferSource, message as BufferSource)
          .catch(() => false)
      ),
    );
    cases.forEach(([kind, key, message, sig], i) => {
      const ours = verifyRs256(key.fast, message, sig);
      if (ours !== reference[i]) {
        throw new Error(
          `${kind}: rs256 says ${ours}, crypto.subtle ${
            reference[i]
          } (${key.bits}-bit key, signature ${sig.length} bytes)`,
        );
      }
      note(kind, ours);
    });
  }
  // Every kind was drawn, the valid ones verified, and the forgeries did not.
  assertEquals(stats.get("valid")?.valid, stats.get("valid")?.cases);
  assert((stats.get("valid")?.cases ?? 0) > 1000);
  assertEquals(
    stats.get("crafted: valid encoding")?.valid,
    stats.get("crafted: valid encoding")?.cases,
  );
  for (const [kind, s] of stats) {
    if (kind === "valid" || kind === "crafted: valid encoding") continue;
    assertEquals(s.valid, 0, `${kind}: ${s.valid} of ${s.cases} verified`);
  }
  assert(stats.size >= 20, [...stats.keys()].join(", "));
});
