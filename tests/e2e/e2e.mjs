// End-to-end test of `wxgate dev` in a real headless browser (Debian's chromium, driven by
// playwright-core). Started by tests/browser_e2e.rs, which runs `wxgate dev` first.
//
//   node tests/e2e/e2e.mjs <gateway-url> <mock-url> <artifact-path>
//   e.g.  node tests/e2e/e2e.mjs https://localhost:8443 http://localhost:8444 tests/e2e/artifacts/whoami.png
//
// Flow: / → 302 /_wxgate/login → 302 mock qrconnect page → click alice → mock confirm → 302
// /_wxgate/callback → the demo site's account linking: alice is new, so 302 to its phone-binding
// page (/public/bind-phone?p=..&ticket=..) → type phone + code → 303 /_wxgate/link/complete →
// 302 / (whoami page, served by the demo upstream through the gateway, with X-WeChat-UserId) →
// screenshot → log out → / again lands on the mock login page → alice again goes straight in,
// same account → log out.
// Exits 0 on success; non-zero with a message naming the failed step otherwise.

import { mkdtempSync, mkdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { chromium } from 'playwright-core';

const CHROMIUM = process.env.WXGATE_E2E_CHROMIUM || '/usr/bin/chromium';
const OVERALL_TIMEOUT_MS = 120_000;
const STEP_TIMEOUT_MS = 15_000;
const NAV_TIMEOUT_MS = 20_000;

// From src/mock.rs fixtures.
const WEBSITE_APPID = 'wx1000000000000001';
const ALICE = { key: 'alice', nickname: 'Alice 🐼 小爱', unionid: 'oUnionAlice00000000000000001' };
// The mock's users, in order: `snapshot` comes back as a snapshot-page (快照页) user.
const USER_KEYS = ['alice', 'bob', 'carol', 'snapshot'];
const COOKIE_NAME = '_wxgate';
// From src/tools/dev_link.rs: the demo site's code and its first account.
const BIND_CODE = '123456';
const DEMO_USER = 'u1001';

class StepError extends Error {}

function usage() {
  console.error('usage: node e2e.mjs <gateway-url> <mock-url> <artifact-path>');
  process.exit(2);
}

const [gatewayArg, mockArg, artifactArg] = process.argv.slice(2);
if (!gatewayArg || !mockArg || !artifactArg) usage();
const GATEWAY = new URL(gatewayArg).origin; // https://localhost:PORT
const MOCK = new URL(mockArg).origin; // http://localhost:PORT2
const ARTIFACT = resolve(artifactArg);

let currentStep = 'start';
const navLog = []; // main-frame navigation responses, for diagnostics
const pageErrors = [];

function step(name) {
  currentStep = name;
  console.log(`e2e: ${name}`);
}

function check(cond, message) {
  if (!cond) throw new StepError(message);
}

function expectEqual(actual, expected, what) {
  check(actual === expected, `${what}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`);
}

/** The redirect chain that ended in `response`, oldest first: [{url, status}]. */
function redirectChain(response) {
  const chain = [];
  let req = response.request();
  chain.unshift({ url: req.url(), status: response.status() });
  for (let prev = req.redirectedFrom(); prev; prev = prev.redirectedFrom()) {
    chain.unshift({ url: prev.url(), status: null });
  }
  return chain;
}

function isMockLoginUrl(u) {
  const url = new URL(u);
  return url.origin === MOCK && url.pathname === '/connect/qrconnect';
}

/** Assert a URL is the mock's qrconnect page for the website app, pointing back at this gateway. */
function checkQrconnectUrl(u) {
  check(isMockLoginUrl(u), `expected the mock WeChat login page ${MOCK}/connect/qrconnect?..., got ${u}`);
  const q = new URL(u).searchParams;
  expectEqual(q.get('appid'), WEBSITE_APPID, 'qrconnect appid');
  expectEqual(q.get('redirect_uri'), `${GATEWAY}/_wxgate/callback`, 'qrconnect redirect_uri');
  expectEqual(q.get('response_type'), 'code', 'qrconnect response_type');
  expectEqual(q.get('scope'), 'snsapi_login', 'qrconnect scope');
  check(/^[A-Za-z0-9]{1,128}$/.test(q.get('state') || ''), `qrconnect state is not [A-Za-z0-9]{1,128}: ${q.get('state')}`);
}

/** Go to `/` while logged out and check the trip through /_wxgate/login to the mock page. */
async function visitRootExpectLogin(page, label) {
  const resp = await page.goto(`${GATEWAY}/`, { waitUntil: 'load' });
  check(resp, `${label}: no response for ${GATEWAY}/`);
  const chain = redirectChain(resp);
  console.log(`e2e:   ${label} redirect chain: ${chain.map((c) => c.url).join(' -> ')}`);
  const urls = chain.map((c) => c.url);
  expectEqual(urls[0], `${GATEWAY}/`, `${label}: first URL`);
  check(
    urls.some((x) => x.startsWith(`${GATEWAY}/_wxgate/login?`) && new URL(x).searchParams.get('rd') === '/'),
    `${label}: expected a redirect through ${GATEWAY}/_wxgate/login?rd=%2F; chain: ${urls.join(' -> ')}`,
  );
  checkQrconnectUrl(page.url());
  expectEqual(resp.status(), 200, `${label}: mock login page status`);
  expectEqual(await page.title(), '微信登录 (mock) / WeChat login (mock)', `${label}: mock login page title`);
}

async function identityTable(page) {
  return page.$$eval('table#identity tr', (rows) =>
    Object.fromEntries(
      rows.map((r) => [r.querySelector('th')?.textContent?.trim() ?? '', r.querySelector('td')?.textContent?.trim() ?? '']),
    ),
  );
}

async function main() {
  const profile = mkdtempSync(join(tmpdir(), 'wxgate-e2e-profile-'));
  let context;
  let page;
  try {
    step(`launch ${CHROMIUM} (profile ${profile})`);
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      // Playwright passes --user-data-dir=<profile> itself (it refuses it in `args`).
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--ignore-certificate-errors',
      ],
      ignoreHTTPSErrors: true,
      viewport: { width: 1000, height: 900 },
      locale: 'zh-CN',
      timeout: 30_000,
    });
    context.setDefaultTimeout(STEP_TIMEOUT_MS);
    context.setDefaultNavigationTimeout(NAV_TIMEOUT_MS);
    page = context.pages()[0] ?? (await context.newPage());
    page.on('response', (r) => {
      if (r.request().isNavigationRequest() && r.frame() === page.mainFrame()) {
        navLog.push(`${r.status()} ${r.url()}${r.headers().location ? ` -> ${r.headers().location}` : ''}`);
      }
    });
    page.on('pageerror', (e) => pageErrors.push(String(e)));

    // 1. Logged out: / → /_wxgate/login → mock WeChat.
    step('open / (logged out) and expect the mock WeChat login page');
    await visitRootExpectLogin(page, 'first visit');
    // The login state is bound to a short-lived HttpOnly cookie set by /login (DESIGN.md); the
    // browser must hold one that it will send to the callback.
    const loginCookies = await context.cookies(`${GATEWAY}/_wxgate/callback`);
    console.log(
      `e2e:   cookies for /_wxgate/callback before login: ${loginCookies.map((c) => `${c.name} (path ${c.path}, sameSite ${c.sameSite})`).join(', ') || '(none)'}`,
    );
    check(
      loginCookies.some((c) => c.name !== COOKIE_NAME && c.httpOnly && c.secure),
      'no HttpOnly, Secure login cookie for /_wxgate/callback after /_wxgate/login',
    );

    // 2. The mock lists the test users.
    step('mock login page lists the test users');
    const ids = await page.$$eval('a.user', (as) => as.map((a) => a.id));
    expectEqual(JSON.stringify(ids), JSON.stringify(USER_KEYS.map((k) => `user-${k}`)), 'user links');
    const alice = page.locator(`a#user-${ALICE.key}`);
    await alice.waitFor({ state: 'visible' });
    const aliceText = await alice.innerText();
    check(aliceText.includes(ALICE.nickname), `alice's link does not show her nickname: ${JSON.stringify(aliceText)}`);
    check(aliceText.includes(ALICE.unionid), `alice's link does not show her unionid: ${JSON.stringify(aliceText)}`);
    check(await page.locator('a#deny').isVisible(), 'no deny link on the mock login page');

    // 3. Pick alice → callback → first login: the demo site's phone-binding page.
    step('click a#user-alice and expect the phone-binding page');
    await Promise.all([page.waitForURL((u) => u.pathname === '/public/bind-phone', { waitUntil: 'load' }), alice.click()]);
    check(
      navLog.some((l) => l.includes(`${GATEWAY}/_wxgate/callback?`)),
      `no navigation through ${GATEWAY}/_wxgate/callback; navigations:\n  ${navLog.join('\n  ')}`,
    );
    const bindUrl = new URL(page.url());
    expectEqual(bindUrl.origin, GATEWAY, 'bind page origin');
    check(/^[A-Za-z0-9_-]{40,}$/.test(bindUrl.searchParams.get('ticket') || ''), `bind page URL has no ticket: ${page.url()}`);
    check(
      !(await context.cookies(GATEWAY)).some((c) => c.name === COOKIE_NAME),
      `a ${COOKIE_NAME} session cookie exists before the phone is bound`,
    );
    check((await page.locator('#who').innerText()).includes(ALICE.nickname), 'the bind page does not greet alice');

    // 3b. Bind a phone: a wrong code first (the form again), then the demo's code.
    step('bind a phone number on the demo site');
    await page.fill('#phone', '13800000000');
    await page.fill('#captcha', '000000');
    await Promise.all([
      page.waitForResponse((r) => r.url() === `${GATEWAY}/public/bind-phone` && r.request().method() === 'POST'),
      page.click('#bind'),
    ]);
    await page.locator('#error').waitFor({ state: 'visible' });
    check((await page.locator('#error').innerText()).includes('Wrong code'), 'a wrong code was not refused');
    await page.fill('#phone', '13800000000');
    await page.fill('#captcha', BIND_CODE);
    await Promise.all([page.waitForURL(`${GATEWAY}/`, { waitUntil: 'load' }), page.click('#bind')]);
    check(
      navLog.some((l) => l.includes(`${GATEWAY}/_wxgate/link/complete?`)),
      `no navigation through ${GATEWAY}/_wxgate/link/complete; navigations:\n  ${navLog.join('\n  ')}`,
    );

    // 4. The session cookie as a browser stored it.
    step('session cookie');
    const session = (await context.cookies(GATEWAY)).find((c) => c.name === COOKIE_NAME);
    check(session, `no ${COOKIE_NAME} cookie for ${GATEWAY} after login`);
    check(session.httpOnly, `${COOKIE_NAME} cookie is not HttpOnly`);
    check(session.secure, `${COOKIE_NAME} cookie is not Secure (public_url is https)`);
    expectEqual(session.sameSite, 'Lax', `${COOKIE_NAME} cookie SameSite`);
    expectEqual(session.path, '/', `${COOKIE_NAME} cookie Path`);
    check(session.expires > Date.now() / 1000 + 3600, `${COOKIE_NAME} cookie is not persistent (expires ${session.expires})`);

    // 5. whoami: what the upstream received.
    step('whoami page shows alice');
    expectEqual(await page.title(), 'whoami', 'whoami page title');
    const who = (await page.locator('h1#who').innerText()).trim();
    expectEqual(who, `你好, ${ALICE.nickname}`, 'h1#who greeting');
    const idt = await identityTable(page);
    console.log(`e2e:   identity headers: ${JSON.stringify(idt)}`);
    expectEqual(idt['x-wechat-unionid'], ALICE.unionid, 'x-wechat-unionid');
    expectEqual(idt['x-wechat-appid'], WEBSITE_APPID, 'x-wechat-appid');
    expectEqual(idt['x-wechat-source'], 'website', 'x-wechat-source');
    expectEqual(idt['x-wechat-userid'], DEMO_USER, 'x-wechat-userid (the demo site\'s account)');
    check(/^o[A-Za-z0-9_-]{27}$/.test(idt['x-wechat-openid'] ?? ''), `x-wechat-openid looks wrong: ${idt['x-wechat-openid']}`);
    check(
      (idt['x-wechat-nickname'] ?? '').includes(`(${ALICE.nickname})`),
      `x-wechat-nickname does not decode to ${ALICE.nickname}: ${idt['x-wechat-nickname']}`,
    );
    check(!/[^\x21-\x7e]/.test((idt['x-wechat-nickname'] ?? '').split(' ')[0]), 'x-wechat-nickname header is not percent-encoded ASCII');
    const allText = await page.locator('body').innerText();
    check(!allText.includes(`${COOKIE_NAME}=`), `the upstream received the gateway's own cookie ${COOKIE_NAME}`);

    step(`screenshot → ${ARTIFACT}`);
    mkdirSync(dirname(ARTIFACT), { recursive: true });
    await page.screenshot({ path: ARTIFACT, fullPage: true });
    check(statSync(ARTIFACT).size > 1000, `screenshot ${ARTIFACT} is suspiciously small`);
    console.log(`screenshot: ${ARTIFACT}`);

    // 6. Log out, then / needs a login again.
    step('follow the logout link');
    const logout = page.locator('a[href="/_wxgate/logout"]');
    await logout.waitFor({ state: 'visible' });
    // Logout → 302 / → (logged out) 302 /_wxgate/login → mock page: wait for the URL to leave `/`.
    await Promise.all([
      page.waitForURL((u) => u.href !== `${GATEWAY}/` && !u.href.startsWith(`${GATEWAY}/_wxgate/logout`), { waitUntil: 'load' }),
      logout.click(),
    ]);
    console.log(`e2e:   after logout: ${page.url()}`);
    check(
      navLog.some((l) => l.includes(`${GATEWAY}/_wxgate/logout`)),
      `no navigation to ${GATEWAY}/_wxgate/logout; navigations:\n  ${navLog.join('\n  ')}`,
    );
    const after = (await context.cookies(GATEWAY)).find((c) => c.name === COOKIE_NAME);
    check(!after, `${COOKIE_NAME} cookie still in the browser after logout: ${JSON.stringify(after)}`);

    step('open / again (logged out) and expect the mock WeChat login page');
    await visitRootExpectLogin(page, 'after logout');

    // 7. Bound now: alice goes straight in, to the same account, no binding page.
    step('alice again: straight to the whoami page, same account');
    const navsBefore = navLog.length;
    await Promise.all([page.waitForURL(`${GATEWAY}/`, { waitUntil: 'load' }), page.locator(`a#user-${ALICE.key}`).click()]);
    check(
      !navLog.slice(navsBefore).some((l) => l.includes('/public/bind-phone')),
      `a bound user was sent to the binding page again; navigations:\n  ${navLog.slice(navsBefore).join('\n  ')}`,
    );
    expectEqual((await identityTable(page))['x-wechat-userid'], DEMO_USER, 'x-wechat-userid on the second login');

    check(pageErrors.length === 0, `JavaScript errors on the pages: ${pageErrors.join('; ')}`);
    console.log('e2e: PASS');
  } catch (e) {
    const msg = e instanceof StepError ? e.message : e?.stack || String(e);
    console.error(`e2e: FAILED at step "${currentStep}": ${msg}`);
    if (page) {
      try {
        console.error(`e2e:   current URL: ${page.url()}`);
        const failShot = join(dirname(ARTIFACT), 'failure.png');
        mkdirSync(dirname(failShot), { recursive: true });
        await page.screenshot({ path: failShot, fullPage: true, timeout: 5_000 });
        console.error(`e2e:   failure screenshot: ${failShot}`);
        const body = (await page.locator('body').innerText({ timeout: 2_000 })).slice(0, 2000);
        console.error(`e2e:   page text:\n${body}`);
      } catch {
        /* best effort */
      }
    }
    if (navLog.length) console.error(`e2e:   navigations:\n  ${navLog.join('\n  ')}`);
    process.exitCode = 1;
  } finally {
    if (context) {
      await Promise.race([context.close().catch(() => {}), new Promise((r) => setTimeout(r, 10_000))]);
    }
    rmSync(profile, { recursive: true, force: true, maxRetries: 3 });
  }
}

const watchdog = setTimeout(() => {
  console.error(`e2e: FAILED: overall timeout of ${OVERALL_TIMEOUT_MS / 1000}s at step "${currentStep}"`);
  if (navLog.length) console.error(`e2e:   navigations:\n  ${navLog.join('\n  ')}`);
  process.exit(1);
}, OVERALL_TIMEOUT_MS);

await main();
clearTimeout(watchdog);
process.exit(process.exitCode ?? 0);
