// End-to-end test of `wxgate dev --wecom` in a real headless browser (Debian's chromium, driven
// by playwright-core). Started by tests/browser_e2e.rs (browser_wecom_login_whoami).
//
//   node tests/e2e/wecom.mjs <gateway-url> <mock-url> <artifact-path>
//
// Flow: / → 302 /_wxgate/login → the choice page (WeChat / WeCom) → click WeCom → 302 the mock
// WeCom's wwlogin/sso/login page → click zhangsan → mock confirm → 302 /_wxgate/callback → 302 /
// (whoami) showing x-wecom-userid, x-wecom-corpid and x-wechat-source: wecom → screenshot.

import { mkdtempSync, mkdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { chromium } from 'playwright-core';

const CHROMIUM = process.env.WXGATE_E2E_CHROMIUM || '/usr/bin/chromium';
const OVERALL_TIMEOUT_MS = 90_000;

// From src/tools/mock/fixtures.rs.
const CORP_ID = 'ww5000000000000005';
const AGENT_ID = '1000005';
const USERID = 'zhangsan';

const [gatewayArg, mockArg, artifactArg] = process.argv.slice(2);
if (!gatewayArg || !mockArg || !artifactArg) {
  console.error('usage: node wecom.mjs <gateway-url> <mock-url> <artifact-path>');
  process.exit(2);
}
const GATEWAY = new URL(gatewayArg).origin;
const MOCK = new URL(mockArg).origin;
const ARTIFACT = resolve(artifactArg);

let currentStep = 'start';
const navLog = [];

function step(name) {
  currentStep = name;
  console.log(`e2e-wecom: ${name}`);
}

function check(cond, message) {
  if (!cond) throw new Error(message);
}

function expectEqual(actual, expected, what) {
  check(actual === expected, `${what}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`);
}

async function main() {
  const profile = mkdtempSync(join(tmpdir(), 'wxgate-e2e-wecom-'));
  let context;
  let page;
  try {
    step(`launch ${CHROMIUM}`);
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync',
        '--ignore-certificate-errors'],
      ignoreHTTPSErrors: true,
      viewport: { width: 1000, height: 900 },
      locale: 'zh-CN',
      timeout: 30_000,
    });
    context.setDefaultTimeout(15_000);
    context.setDefaultNavigationTimeout(20_000);
    page = context.pages()[0] ?? (await context.newPage());
    page.on('response', (r) => {
      if (r.request().isNavigationRequest() && r.frame() === page.mainFrame()) {
        navLog.push(`${r.status()} ${r.url()}${r.headers().location ? ` -> ${r.headers().location}` : ''}`);
      }
    });

    step('open / (logged out): the choice page');
    const resp = await page.goto(`${GATEWAY}/`, { waitUntil: 'load' });
    expectEqual(resp.status(), 200, 'choice page status');
    check(page.url().startsWith(`${GATEWAY}/_wxgate/login?`), `expected the choice page at /_wxgate/login, got ${page.url()}`);
    const wecom = page.locator('a#via-wecom');
    await wecom.waitFor({ state: 'visible' });
    check((await wecom.innerText()).includes('企业微信'), 'the WeCom button does not say 企业微信');
    check(await page.locator('a#via-wechat').isVisible(), 'no WeChat button on the choice page');

    step('click WeCom: the mock WeCom SSO page');
    await Promise.all([page.waitForURL((u) => u.origin === MOCK, { waitUntil: 'load' }), wecom.click()]);
    const sso = new URL(page.url());
    expectEqual(sso.pathname, '/wwlogin/sso/login', 'SSO page path');
    expectEqual(sso.searchParams.get('login_type'), 'CorpApp', 'login_type');
    expectEqual(sso.searchParams.get('appid'), CORP_ID, 'appid');
    expectEqual(sso.searchParams.get('agentid'), AGENT_ID, 'agentid');
    expectEqual(sso.searchParams.get('redirect_uri'), `${GATEWAY}/_wxgate/callback`, 'redirect_uri');
    expectEqual(await page.title(), '企业微信登录 (mock) / WeCom login (mock)', 'SSO page title');

    step(`click ${USERID}: back on the whoami page`);
    await Promise.all([page.waitForURL(`${GATEWAY}/`, { waitUntil: 'load' }), page.locator(`a#user-${USERID}`).click()]);
    expectEqual(await page.title(), 'whoami', 'whoami title');
    const idt = await page.$$eval('table#identity tr', (rows) =>
      Object.fromEntries(rows.map((r) => [r.querySelector('th')?.textContent?.trim() ?? '', r.querySelector('td')?.textContent?.trim() ?? ''])));
    console.log(`e2e-wecom:   identity headers: ${JSON.stringify(idt)}`);
    expectEqual(idt['x-wecom-userid'], USERID, 'x-wecom-userid');
    expectEqual(idt['x-wecom-corpid'], CORP_ID, 'x-wecom-corpid');
    expectEqual(idt['x-wechat-source'], 'wecom', 'x-wechat-source');
    // The demo site's account linking knows employees by their userid: no binding page.
    expectEqual(idt['x-wechat-userid'], `wecom:${USERID}`, 'x-wechat-userid (account linking)');
    check(!('x-wechat-openid' in idt) && !('x-wechat-unionid' in idt), 'a WeCom login sent WeChat ids');
    expectEqual((await page.locator('h1#who').innerText()).trim(), `你好, ${USERID}`, 'greeting');

    step(`screenshot → ${ARTIFACT}`);
    mkdirSync(dirname(ARTIFACT), { recursive: true });
    await page.screenshot({ path: ARTIFACT, fullPage: true });
    check(statSync(ARTIFACT).size > 1000, 'screenshot too small');
    console.log('e2e-wecom: PASS');
  } catch (e) {
    console.error(`e2e-wecom: FAILED at step "${currentStep}": ${e?.message || e}`);
    if (page) {
      try {
        console.error(`e2e-wecom:   current URL: ${page.url()}`);
        console.error((await page.locator('body').innerText({ timeout: 2_000 })).slice(0, 2000));
      } catch {
        /* best effort */
      }
    }
    if (navLog.length) console.error(`e2e-wecom:   navigations:\n  ${navLog.join('\n  ')}`);
    process.exitCode = 1;
  } finally {
    if (context) {
      await Promise.race([context.close().catch(() => {}), new Promise((r) => setTimeout(r, 10_000))]);
    }
    rmSync(profile, { recursive: true, force: true, maxRetries: 3 });
  }
}

const watchdog = setTimeout(() => {
  console.error(`e2e-wecom: FAILED: overall timeout at step "${currentStep}"`);
  process.exit(1);
}, OVERALL_TIMEOUT_MS);

await main();
clearTimeout(watchdog);
process.exit(process.exitCode ?? 0);
