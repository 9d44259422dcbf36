// End-to-end test of `wxgate dev` in a real headless browser (Debian's chromium, driven by
// playwright-core). Started by tests/browser_e2e.rs, which runs `wxgate dev` first.
//
//   node tests/e2e/e2e.mjs <gateway-url> <mock-url> <artifact-path> [<refusing-gateway-url>]
//   e.g.  node tests/e2e/e2e.mjs https://localhost:8443 http://localhost:8444 tests/e2e/artifacts/whoami.png
//
// Flow: / → 302 /_wxgate/login → 302 mock qrconnect page → click alice → mock confirm → 302
// /_wxgate/callback → the demo site's account linking: alice is new, so 302 to its phone-binding
// page (/public/bind-phone?p=..&ticket=..) → type phone + code → 303 /_wxgate/link/complete →
// 302 / (whoami page, served by the demo upstream through the gateway, with X-WeChat-UserId) →
// screenshot → log out (the signed-out page) → / again lands on the mock login page → alice
// again goes straight in, same account → a phone outside WeChat gets the "open in WeChat" page →
// on the refusing gateway (access rules refuse everyone, upstream down): the 403 page, its
// "switch account" button, the 502 page. The signed-out, open-in-WeChat, 403 and 502 pages are
// saved as <artifact dir>/<page>-<width>x<height>.png at 390x844 and 1280x800.
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

const [gatewayArg, mockArg, artifactArg, refusingArg] = process.argv.slice(2);
if (!gatewayArg || !mockArg || !artifactArg) usage();
const GATEWAY = new URL(gatewayArg).origin; // https://localhost:PORT
const MOCK = new URL(mockArg).origin; // http://localhost:PORT2
const ARTIFACT = resolve(artifactArg);
const REFUSING = refusingArg ? new URL(refusingArg).origin : null; // http://localhost:PORT3
const IPHONE_UA =
  'Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1';
const SIZES = [
  [390, 844],
  [1280, 800],
];

/** Screenshots of the current page at each of SIZES, then the usual viewport again. */
async function shots(page, name) {
  for (const [width, height] of SIZES) {
    await page.setViewportSize({ width, height });
    const path = join(dirname(ARTIFACT), `${name}-${width}x${height}.png`);
    mkdirSync(dirname(path), { recursive: true });
    await page.screenshot({ path });
    // Nothing runs off the side at a phone's width.
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    check(overflow <= 0, `${name} at ${width}x${height}: the page is ${overflow}px wider than the screen`);
    console.log(`screenshot: ${path}`);
  }
  await page.setViewportSize({ width: 1000, height: 900 });
}

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
    await shots(page, 'whoami');

    // 6. Log out: the signed-out page (never straight into a new login), then / needs a login.
    step('follow the logout link: the signed-out page');
    const logout = page.locator('a[href="/_wxgate/logout"]');
    await logout.waitFor({ state: 'visible' });
    await Promise.all([
      page.waitForURL((u) => u.href.startsWith(`${GATEWAY}/_wxgate/logout`), { waitUntil: 'load' }),
      logout.click(),
    ]);
    console.log(`e2e:   after logout: ${page.url()}`);
    const signedOut = await page.locator('body').innerText();
    check(signedOut.includes('已退出登录') && signedOut.includes('Signed out'), `no signed-out page: ${signedOut}`);
    expectEqual(await page.locator('a.btn').getAttribute('href'), '/_wxgate/login?rd=%2F', 'sign-in link');
    await shots(page, 'signed-out');
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

    // 8. A phone browser outside WeChat: the page telling the user to open the link in WeChat.
    step('a phone outside WeChat: the open-in-WeChat page');
    await page.setExtraHTTPHeaders({ 'user-agent': IPHONE_UA });
    const phone = await page.goto(`${GATEWAY}/_wxgate/login?rd=%2F`, { waitUntil: 'load' });
    expectEqual(phone.status(), 200, 'open-in-WeChat page status');
    check((await page.locator('body').innerText()).includes('微信'), 'the open-in-WeChat page does not mention WeChat');
    await shots(page, 'open-in-wechat');
    await page.setExtraHTTPHeaders({});

    if (REFUSING) {
      // 9. Refused by the access rules: who the user is, and a way to switch account.
      step('refusing gateway: alice is refused (the 403 page)');
      await page.goto(`${REFUSING}/`, { waitUntil: 'load' });
      check(isMockLoginUrl(page.url()), `expected the mock login page, got ${page.url()}`);
      await Promise.all([
        page.waitForURL((u) => u.origin === REFUSING && u.pathname === '/_wxgate/callback', { waitUntil: 'load' }),
        page.locator(`a#user-${ALICE.key}`).click(),
      ]);
      const refused = await page.locator('body').innerText();
      check(refused.includes('无访问权限') && refused.includes('Access denied'), `no 403 page: ${refused}`);
      check(refused.includes('OpenID') && refused.includes(ALICE.unionid), `the 403 page does not name alice: ${refused}`);
      check(refused.includes('换个账号 / Switch account'), `no switch-account button: ${refused}`);
      await shots(page, '403');
      step('switch account: logout, then a new login');
      await Promise.all([page.waitForURL((u) => isMockLoginUrl(u.href), { waitUntil: 'load' }), page.locator('a.btn').click()]);

      // 10. The upstream is down: the 502 page offers a retry.
      step('refusing gateway: upstream down (the 502 page)');
      const down = await page.goto(`${REFUSING}/public/x`, { waitUntil: 'load' });
      expectEqual(down.status(), 502, '502 page status');
      const downText = await page.locator('body').innerText();
      check(downText.includes('重试 / Try again'), `no retry button on the 502 page: ${downText}`);
      await shots(page, '502');
    }

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
