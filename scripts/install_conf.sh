#!/bin/sh
# install_conf.sh SRC DIR - meson install script (conf/meson.build): puts the
# sample config SRC as DIR/conduitd.conf (mode 0644, all lines commented out)
# unless a conduitd.conf is already there: a reinstall or upgrade must never
# overwrite the operator's edited file (meson's install_data would). DESTDIR
# is honoured as meson does for its own files.
set -eu
src=$1
dir="${DESTDIR:-}$2"
mkdir -p "$dir"
if [ -e "$dir/conduitd.conf" ]; then
    echo "keeping existing $dir/conduitd.conf (sample: $src)"
else
    install -m 0644 "$src" "$dir/conduitd.conf"
    echo "installed sample config $dir/conduitd.conf"
fi
