const assert = require('assert');
describe('db', function () {
  before(function () { throw new Error('cannot connect'); });
  it('reads', function () {});
  it('writes', function () {});
});
describe('math', function () {
  it('adds', function () { assert.strictEqual(1 + 1, 2); });
  it('fails', function () { assert.strictEqual(1 + 1, 3); });
  it.skip('later', function () {});
});
