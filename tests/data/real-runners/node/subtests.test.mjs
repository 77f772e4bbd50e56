import { test } from 'node:test';
import assert from 'node:assert';
test('top pass', () => {});
test('parent ok', async (t) => {
  await t.test('child 1', () => {});
  await t.test('child 2', () => {});
});
test('parent bad', async (t) => {
  await t.test('child ok', () => {});
  await t.test('child fails', () => { assert.strictEqual(1, 2); });
});
test('skipped', { skip: true }, () => {});
