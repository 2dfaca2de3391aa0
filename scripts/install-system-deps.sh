#!/usr/bin/env bash
# System packages dossier needs: pango for WeasyPrint (PDF) and fonts for every script always; with --browser, Debian's
# chromium and poppler-utils for the browser and PDF-page tests. Installs only what is missing,
# and only as root on a Debian-like system; otherwise says what to install.
set -euo pipefail
need=()
ldconfig -p 2>/dev/null | grep -q 'libpango-1.0.so' || need+=(libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core)
# Fonts for names and titles in any script: the PDF embeds only what fontconfig finds
# (Chinese/Japanese/Korean, emoji, Devanagari; DejaVu covers Latin, Cyrillic, Greek, Arabic).
font() { fc-list : family 2>/dev/null | grep -i "$1" >/dev/null; }  # not grep -q: pipefail
font 'Noto Sans CJK' || need+=(fonts-noto-cjk)
font 'Noto Color Emoji' || need+=(fonts-noto-color-emoji)
font 'Lohit Devanagari' || need+=(fonts-lohit-deva)
if [[ "${1:-}" == "--browser" ]]; then
  command -v chromium >/dev/null || need+=(chromium)
  command -v pdftoppm >/dev/null || need+=(poppler-utils)
fi
((${#need[@]})) || exit 0
if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
  echo "installing system packages: ${need[*]}"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
else
  echo "dossier needs these system packages; install them with your package manager: ${need[*]}" >&2
  [[ "${1:-}" == "--browser" ]] || exit 1
fi
