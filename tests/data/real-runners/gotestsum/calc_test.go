package calc

import (
	"os"
	"path/filepath"
	"testing"
)

// flaky fails on its first attempt only (a marker file remembers the attempt).
func flaky(t *testing.T, name string) {
	marker := filepath.Join(os.TempDir(), "ci-fanout-gotestsum-"+name)
	if _, err := os.Stat(marker); err != nil {
		os.WriteFile(marker, []byte("x"), 0o644)
		t.Fatalf("first attempt of %s fails", name)
	}
}

func TestPass(t *testing.T)       {}
func TestFlaky(t *testing.T)      { flaky(t, "TestFlaky") }
func TestAlwaysFails(t *testing.T) { t.Fatal("always") }
func TestSkip(t *testing.T)       { t.Skip("not here") }
func TestTable(t *testing.T) {
	t.Run("one", func(t *testing.T) {})
	t.Run("two", func(t *testing.T) { flaky(t, "TestTable_two") })
}
