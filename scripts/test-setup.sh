#!/usr/bin/env bash
# Extra system packages some tests need (headless Chromium for the HTML report test).
# Installed only when missing; a failure here makes those tests skip with a message.
set -u
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) >/dev/null 2>&1 \
      || echo "note: could not install chromium; browser tests will skip"
  fi
fi
exit 0
