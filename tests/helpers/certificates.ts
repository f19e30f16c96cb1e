// Key material of one test cluster: its own CA, a serving certificate for
// loopback, a service-account signing key and random bearer tokens. Each
// cluster generates its own, so two clusters never trust each other's
// credentials. Test-only code; nothing here enters the product.

/** The files generateCertificates() writes. */
export interface Certificates {
  caPem: string;
  caCert: string;
  servingCert: string;
  servingKey: string;
  serviceAccountKey: string;
  serviceAccountPublicKey: string;
}

/** 32 random bytes as hex: a static bearer token. */
export function randomToken(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** A static token user of kube-apiserver's --token-auth-file. */
export interface TokenUser {
  token: string;
  user: string;
  groups: string[];
}

/** Writes a --token-auth-file (`token,user,uid,"group1,group2"`), mode 0600. */
export async function writeTokenFile(path: string, users: TokenUser[]): Promise<void> {
  const lines = users.map((u) => `${u.token},${u.user},${u.user},"${u.groups.join(",")}"\n`);
  await Deno.writeTextFile(path, lines.join(""), { mode: 0o600 });
}

/** A one-day CA, a serving cert for 127.0.0.1/localhost and an RSA service-account key pair. */
export async function generateCertificates(dir: string): Promise<Certificates> {
  const p = (name: string) => `${dir}/${name}`;
  await Deno.writeTextFile(
    p("serving.ext"),
    [
      "basicConstraints=critical,CA:FALSE",
      "keyUsage=critical,digitalSignature,keyEncipherment",
      "extendedKeyUsage=serverAuth",
      "subjectAltName=IP:127.0.0.1,DNS:localhost",
      "",
    ].join("\n"),
  );
  const ec = "ec_paramgen_curve:prime256v1";
  await openssl(argv`req -x509 -newkey ec -pkeyopt ${ec} -nodes -days 1
    -keyout ${p("ca.key")} -out ${p("ca.crt")} -subj /CN=kuberollouttrigger-test-ca
    -addext basicConstraints=critical,CA:TRUE
    -addext keyUsage=critical,keyCertSign,cRLSign,digitalSignature`);
  await openssl(argv`req -newkey ec -pkeyopt ${ec} -nodes
    -keyout ${p("serving.key")} -out ${p("serving.csr")} -subj /CN=kube-apiserver`);
  await openssl(argv`x509 -req -in ${p("serving.csr")} -days 1 -extfile ${p("serving.ext")}
    -CA ${p("ca.crt")} -CAkey ${p("ca.key")} -CAcreateserial -out ${p("serving.crt")}`);
  await openssl(argv`genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out ${p("sa.key")}`);
  await openssl(argv`pkey -in ${p("sa.key")} -pubout -out ${p("sa.pub")}`);
  return {
    caPem: await Deno.readTextFile(p("ca.crt")),
    caCert: p("ca.crt"),
    servingCert: p("serving.crt"),
    servingKey: p("serving.key"),
    serviceAccountKey: p("sa.key"),
    serviceAccountPublicKey: p("sa.pub"),
  };
}

/** An argument vector: literal text splits on whitespace, interpolated values stay whole. */
function argv(strings: TemplateStringsArray, ...values: string[]): string[] {
  const args: string[] = [];
  strings.forEach((text, i) => {
    args.push(...text.split(/\s+/).filter((part) => part !== ""));
    if (i < values.length) args.push(values[i]);
  });
  return args;
}

/** Runs openssl for test certificates; throws with its stderr when it fails. */
export async function openssl(args: string[]): Promise<void> {
  const output = await new Deno.Command("openssl", {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output().catch((error) => {
    throw new Error("Cannot run openssl (needed to generate test certificates); install it", {
      cause: error,
    });
  });
  if (!output.success) {
    const stderr = new TextDecoder().decode(output.stderr).trim();
    throw new Error(`openssl ${args[0]} failed with code ${output.code}: ${stderr}`);
  }
}
