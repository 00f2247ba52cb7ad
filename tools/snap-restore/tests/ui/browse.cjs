// The file browser, the pictures, a phone-width window and a disk restore,
// in headless Chromium driven by playwright-core. Called by tests/browse.rs:
//   node browse.cjs URL SHOTS ID INSIDE DOWNLOADS RESTORE_TO BARS
// URL carries the token; ID is the newest snapshot of set s; INSIDE the
// source folder's path inside it; BARS the snapshots the added-bytes plot
// must draw. It walks three folders down (the first by keyboard alone),
// downloads a file and the folder, restores the folder (dry run, confirm),
// looks at the page 375 px wide, and restores the disk snapshot vm/s in
// place (dry run, confirm). A screenshot of each step goes to SHOTS; any
// failed check exits 1.
const { chromium } = require('playwright-core');

const [url, shots, id, inside, downloads, restoreTo, bars] = process.argv.slice(2);
const base = url.replace(/\/\?token=.*/, '');

function check(ok, what) {
  if (!ok) {
    throw new Error(`check failed: ${what}`);
  }
}

(async () => {
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu'],
  });
  const context = await browser.newContext({ viewport: { width: 1200, height: 900 }, acceptDownloads: true });
  const page = await context.newPage();
  const shot = (name) => page.screenshot({ path: `${shots}/${name}.png`, fullPage: false });
  page.on('pageerror', (e) => { console.error(`page error: ${e}`); process.exitCode = 1; });
  try {
    // 1. The pictures: one bar per snapshot.
    await page.goto(url);
    const drawn = await page.locator('svg.plot.added rect.bar').count();
    check(drawn === Number(bars), `one bar per snapshot (${drawn} of ${bars})`);
    await page.locator('h2:has-text("Pictures")').scrollIntoViewIfNeeded();
    await shot('pictures');

    // 2. Three folders down: the first with the keyboard alone.
    await page.goto(`${base}/browse/s/${id}/${inside}`);
    let found = false;
    for (let i = 0; i < 10 && !found; i++) {
      await page.keyboard.press('j');
      found = (await page.evaluate(() => document.activeElement.textContent)) === 'docs/';
    }
    check(found, 'j reaches docs/');
    await Promise.all([page.waitForNavigation(), page.keyboard.press('Enter')]);
    check((await page.locator('h2').textContent()).endsWith('/docs'), 'Enter opened docs');
    await page.click('#listing a:text-is("2026/")');
    await page.click('#listing a:text-is("dec/")');
    check((await page.locator('h2').textContent()).endsWith('/docs/2026/dec'), 'three levels down');
    check((await page.locator('#listing td.mark:text-is("+")').count()) >= 1, 'a new file is marked');
    await shot('browse');

    // 3. A file and the folder, downloaded.
    const [file] = await Promise.all([
      page.waitForEvent('download'),
      page.click('#listing a[download="notes.txt"]'),
    ]);
    await file.saveAs(`${downloads}/notes.txt`);
    const [folder] = await Promise.all([
      page.waitForEvent('download'),
      page.click('a:has-text("download this folder")'),
    ]);
    await folder.saveAs(`${downloads}/dec.tar.zst`);

    // 4. Restore this folder: the form comes filled in; dry run, confirm.
    await page.click('a:has-text("restore this folder")');
    check((await page.locator('#paths').inputValue()).endsWith('docs/2026/dec'), 'the folder is filled in');
    await page.fill('#to', restoreTo);
    await page.click('#preview');
    await page.waitForSelector('#summary');
    check((await page.locator('#summary').textContent()).includes('to create'), 'the dry run');
    await shot('browse-restore-preview');
    await page.click('#confirm');
    await page.waitForSelector('body[data-done="1"]', { timeout: 30000 });
    const restored = await page.locator('#state').textContent();
    check(restored.startsWith('restored: '), `the folder restore ended well (${restored})`);

    // 5. 375 px wide: nothing wider than the window.
    await page.setViewportSize({ width: 375, height: 800 });
    for (const at of [url, `${base}/browse/s/${id}/${inside}/docs/2026/dec`]) {
      await page.goto(at);
      const wide = await page.evaluate(() => document.documentElement.scrollWidth);
      check(wide <= 376, `${at} fits 375 px (${wide})`);
    }
    await shot('phone-browse');
    await page.goto(url);
    await shot('phone');
    await page.setViewportSize({ width: 1200, height: 900 });

    // 6. The disk snapshot, restored in place from its card.
    await page.goto(url);
    await page.click('a.disk');
    await page.click('#preview');
    await page.waitForSelector('#summary');
    check((await page.locator('#summary').textContent()).includes('would rewrite'), 'the disk dry run');
    await shot('disk-preview');
    await page.click('#confirm');
    await page.waitForSelector('body[data-done="1"]', { timeout: 60000 });
    const disk = await page.locator('#state').textContent();
    check(disk.startsWith('restored vm/s'), `the disk restore ended well (${disk})`);
    await shot('disk-done');
  } catch (e) {
    console.error(String(e.stack || e));
    await shot('failure').catch(() => {});
    process.exitCode = 1;
  } finally {
    await browser.close();
  }
})();
