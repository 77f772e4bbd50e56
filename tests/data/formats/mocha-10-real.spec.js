const assert = require('assert');
let n = 0;
describe('Calc', function () {
  it('adds', function () { assert.equal(1 + 1, 2); });
  it('fails', function () { assert.equal(1, 2); });
  it('throws', function () { throw new TypeError('bad type'); });
  it.skip('later', function () {});
  it('flaky', function () { this.retries(2); n += 1; if (n < 2) throw new Error('first try'); });
  it('adds', function () {});
});
describe('Db', function () {
  before(function () { throw new Error('connect refused'); });
  it('reads', function () {});
  it('writes', function () {});
});
describe('After', function () {
  after(function () { throw new Error('cleanup broke'); });
  it('works', function () {});
});
