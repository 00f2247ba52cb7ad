// The timeline as a user clicks through it, in headless Chromium driven by
// playwright-core. Called by tests/ui.rs with:
//   node flow.cjs URL SHOTS RESTORE_TO SET_ID_TAGGED SET_ID_PIN SET_ID_DELETE FOLDER
// It opens the page, filters by tag, diffs two snapshots, follows a file's
// history, restores a folder (dry run, confirm, progress), pins a snapshot
// and deletes one with the typed confirmation; a screenshot of each step
// goes to SHOTS. Each step checks what the page shows; any failure exits 1.
const { chromium } = require('playwright-core');

const [url, shots, restoreTo, tagged, toPin, toDelete, folder] = process.argv.slice(2);

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
  const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
  const shot = (name) => page.screenshot({ path: `${shots}/${name}.png`, fullPage: false });
  page.on('pageerror', (e) => { console.error(`page error: ${e}`); process.exitCode = 1; });
  try {
    // 1. The timeline.
    await page.goto(url);
    check((await page.locator('h1').textContent()) === 'snap timeline', 'the title');
    const cards = await page.locator('.card').count();
    check(cards >= 3, `every snapshot has a card (${cards})`);
    await shot('timeline');

    // 2. Filter by tag: only the tagged snapshot stays.
    await page.fill('#filter', 'tag:keep');
    const visible = await page.locator('.card:not(.hidden)').count();
    check(visible === 1, `one card left after the tag filter (${visible})`);
    check((await page.locator('.card:not(.hidden) .id').textContent()).includes(tagged), 'the tagged card');
    await shot('filter');
    await page.fill('#filter', '');

    // 3. Diff two snapshots, from the newest card's link.
    await page.locator('a:has-text("what changed since")').first().click();
    await page.waitForSelector('h2:has-text("From")');
    check((await page.locator('.change').count()) >= 1, 'the diff lists changes');
    await shot('diff');
    await page.locator('a.textdiff').first().click();
    await page.waitForSelector('#textdiff');
    check((await page.locator('#textdiff').textContent()).includes('+three'), 'the text diff');
    await shot('text-diff');
    await page.goBack();

    // 4. A file's history, from the diff.
    await page.locator('.change a:has-text("history")').first().click();
    await page.waitForSelector('h2:has-text("History of")');
    check((await page.locator('.card').count()) >= 2, 'the history has versions');
    await shot('history');

    // 5. Restore a folder into a new place: dry run, confirm, progress.
    await page.goto(url.replace(/\/\?token=.*/, '/'));
    await page.locator('a.act:has-text("restore…")').first().click();
    await page.fill('#to', restoreTo);
    await page.fill('#paths', folder || '');
    await page.click('#preview');
    await page.waitForSelector('#summary');
    check((await page.locator('#summary').textContent()).includes('to create'), 'the dry run summary');
    check((await page.locator('#plan tr').count()) >= 1, 'the dry run lists entries');
    await shot('restore-preview');
    await page.click('#confirm');
    await page.waitForSelector('body[data-done="1"]', { timeout: 30000 });
    const state = await page.locator('#state').textContent();
    check(state.startsWith('restored: '), `the restore ended well (${state})`);
    await shot('restore-done');

    // 6. Pin a snapshot from its card.
    await page.goto(url.replace(/\/\?token=.*/, '/'));
    const pinCard = page.locator('.card', { has: page.locator(`.id:text-is("${toPin}")`) });
    await pinCard.locator('form:has(input[value="pin"]) input[name="value"]').fill('kept for the audit');
    await pinCard.locator('form:has(input[value="pin"]) button').click();
    await page.waitForSelector('.badge.pin');
    check((await page.locator('.badge.pin').first().textContent()).includes('kept for the audit'), 'the pin shows');

    // 7. Delete one, typing its name.
    const delCard = page.locator('.card', { has: page.locator(`.id:text-is("${toDelete}")`) });
    await delCard.locator('a:has-text("delete snapshot…")').click();
    await page.waitForSelector('#frees');
    await page.fill('#confirm', toDelete);
    await shot('delete');
    await page.click('#delete');
    await page.waitForSelector('#deleted');
    check((await page.locator('#deleted').textContent()).startsWith('deleted '), 'the delete says so');
    await page.goto(url.replace(/\/\?token=.*/, '/'));
    check((await page.locator(`.id:text-is("${toDelete}")`).count()) === 0, 'the deleted card is gone');
  } catch (e) {
    console.error(String(e.stack || e));
    await shot('failure').catch(() => {});
    process.exitCode = 1;
  } finally {
    await browser.close();
  }
})();
