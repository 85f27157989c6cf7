// A real OpenID provider for the tests: panva's oidc-provider (OpenID Certified), on loopback.
// Configuration comes as JSON in OP_CONFIG: {issuer, port, clients: [...], accounts: {login: {claims}}}.
// Its development interactions (a login form taking any password for a known login, then a consent
// button) stand in for the firm's login page.
// Imported by path: the package lives in .tools/node_modules, outside this script's tree.
const { Provider } = await import(process.env.OIDC_PROVIDER_MODULE);

const config = JSON.parse(process.env.OP_CONFIG);
const accounts = config.accounts;

const provider = new Provider(config.issuer, {
  clients: config.clients,
  cookies: { keys: [config.cookie_key] },
  jwks: config.jwks,
  claims: { openid: ['sub'], email: ['email'], profile: ['name', 'preferred_username', 'groups', 'employee_number'] },
  conformIdTokenClaims: false, // the claims the scopes ask for go into the ID token itself
  features: { devInteractions: { enabled: true } },
  pkce: { required: () => true },
  async findAccount(ctx, sub) {
    const person = accounts[sub];
    if (!person) return undefined;
    return { accountId: sub, async claims() { return { sub, ...person }; } };
  },
});
provider.proxy = false;
provider.listen(config.port, '127.0.0.1', () => {
  process.stdout.write('ready\n');
});
