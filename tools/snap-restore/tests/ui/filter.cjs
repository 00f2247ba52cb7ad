// Types TEXT into the filter of a timeline file (file://PAGE) in headless
// Chromium and prints what stays visible, as JSON: cards and day headings,
// before and after. Called by tests/serve.rs.
const { chromium } = require('playwright-core');

const [page_path, text] = process.argv.slice(2);

(async () => {
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu'],
  });
  try {
    const page = await browser.newPage();
    await page.goto(`file://${page_path}`);
    const count = async () => ({
      cards: await page.locator('.card:not(.hidden)').count(),
      days: await page.locator('.day:not(.hidden)').count(),
    });
    const before = await count();
    await page.fill('#filter', text);
    const after = await count();
    console.log(JSON.stringify({ before, after }));
  } finally {
    await browser.close();
  }
})().catch((e) => { console.error(String(e.stack || e)); process.exitCode = 1; });
