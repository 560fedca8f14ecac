// Package browsertest opens switchyard's status page in headless Chromium,
// driven with chromedp, against a lab: a module of its own so that chromedp
// stays out of the go.mod of switchyard's users.
//
// The test needs Chromium (Debian's chromium package, /usr/bin/chromium)
// and PostgreSQL's server binaries; without either it skips, unless
// SWITCHYARD_REQUIRE_SERVER is set (as in CI, whose .ci/run installs both),
// where it fails. Run it with -screenshot=../../docs/status-page.png to
// renew the README's picture.
package browsertest
