#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# TLS on the network export (nbdd --tls), with real clients on loopback
# TCP: a CA and server certificate made by certtool, a PSK by psktool;
# nbdinfo, nbdsh, nbdcopy and fio (libnbd) and qemu-img over X.509 and
# PSK, data checked by checksum or fio's verify; --tls=require refusing a
# plaintext client with the TLS-required error; --tls=on serving both; a
# client with the wrong CA failing cleanly while the daemon goes on
# serving; client certificates under --tls-verify-peer; and the start-up
# errors a user can cause.
. "$(dirname "$0")/client-lib.sh"
need nbdinfo nbdsh nbdcopy qemu-img fio certtool psktool sha256sum
use_libnbd_python

PKI=$T/pki   # the server's: ca-cert.pem server-cert.pem server-key.pem
CLI=$T/cli   # a client's: ca-cert.pem client-cert.pem client-key.pem
CAONLY=$T/ca-only # a client without a certificate of its own
BAD=$T/bad   # a client trusting another CA
mkdir -p "$PKI" "$CLI" "$CAONLY" "$BAD"

gen_key() { certtool --generate-privkey --key-type=ecdsa --outfile "$1" 2>/dev/null; }
make_ca() { # dir
	gen_key "$1/ca-key.pem"
	printf 'cn = nbdd test CA\nca\ncert_signing_key\nexpiration_days = 2\n' >"$T/ca.info"
	certtool --generate-self-signed --load-privkey "$1/ca-key.pem" \
		--template "$T/ca.info" --outfile "$1/ca-cert.pem" 2>/dev/null
}
sign() { # dir name template-lines
	gen_key "$1/$2-key.pem"
	printf '%b' "$3" >"$T/$2.info"
	certtool --generate-certificate --load-ca-certificate "$PKI/ca-cert.pem" \
		--load-ca-privkey "$PKI/ca-key.pem" --load-privkey "$1/$2-key.pem" \
		--template "$T/$2.info" --outfile "$1/$2-cert.pem" 2>/dev/null
}
make_ca "$PKI"
sign "$PKI" server 'cn = localhost\nip_address = 127.0.0.1\ndns_name = localhost\ntls_www_server\nsigning_key\nencryption_key\nexpiration_days = 2\n'
sign "$CLI" client 'cn = nbdd test client\ntls_www_client\nsigning_key\nencryption_key\nexpiration_days = 2\n'
cp "$PKI/ca-cert.pem" "$CLI/"
cp "$PKI/ca-cert.pem" "$CAONLY/"
make_ca "$BAD"
rm -f "$PKI/ca-key.pem" "$BAD/ca-key.pem"
psktool -u alice -p "$T/keys.psk" >/dev/null
[ -s "$PKI/server-key.pem" ] && [ -s "$T/keys.psk" ] || fail "certtool/psktool made nothing"

truncate -s 64M "$T/file.img"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
X509="nbds://127.0.0.1:$PORT/disk?tls-certificates=$CAONLY"
PSK="nbds://alice@127.0.0.1:$PORT/disk?tls-psk-file=$T/keys.psk"
PLAIN="nbd://127.0.0.1:$PORT/disk"
QOBJ="tls-creds-x509,id=tls0,dir=$CAONLY,endpoint=client"
QOPTS="driver=nbd,host=127.0.0.1,port=$PORT,export=disk,tls-creds=tls0"
SIZE=$((64 * 1024 * 1024))
sum() { sha256sum | cut -d' ' -f1; }

tls_daemon() { # mode [more options]
	local mode=$1
	shift
	start_daemon --log-level info --listen "tcp:$PORT" --export disk=memory:size=64M \
		--export file="file:path=$T/file.img" \
		--tls="$mode" --tls-certificates "$PKI" --tls-psk "$T/keys.psk" "$@"
}

# ---- --tls=require ----
tls_daemon require

# X.509 with nbdinfo: the size, over TLS
bounded 30 nbdinfo "$X509" >"$T/info" || fail "nbdinfo over TLS: $(cat "$T/info")"
grep -q 'with TLS' "$T/info" || fail "not TLS: $(cat "$T/info")"
grep -q "export-size: $SIZE " "$T/info" || fail "size: $(cat "$T/info")"

# qemu-img: 8 MiB of random data in, then the export out, compared
head -c 8M /dev/urandom >"$T/src.img"
bounded 60 qemu-img convert -n -f raw "$T/src.img" --object "$QOBJ" \
	--target-image-opts "$QOPTS" || fail "qemu-img convert into the export"
bounded 60 qemu-img convert --object "$QOBJ" --image-opts "$QOPTS" \
	-O raw "$T/out.img" || fail "qemu-img convert out of the export"
[ "$(head -c 8M "$T/out.img" | sum)" = "$(sum <"$T/src.img")" ] ||
	fail "qemu-img over TLS: the data read back differs"

# PSK with nbdsh: read what qemu-img wrote, write a pattern, read it back
PSK_URI=$PSK bounded 30 nbdsh -c '
import hashlib, os
h.set_uri_allow_local_file(True)
h.connect_uri(os.environ["PSK_URI"])
assert h.get_tls_negotiated(), "PSK connection without TLS"
buf = h.pread(8 << 20, 0)
print(hashlib.sha256(buf).hexdigest())
h.pwrite(b"\xa5" * 65536, 32 << 20)
assert h.pread(65536, 32 << 20) == b"\xa5" * 65536, "pattern read back"
' >"$T/psk.out" || fail "nbdsh over PSK"
[ "$(cat "$T/psk.out")" = "$(sum <"$T/src.img")" ] ||
	fail "PSK read: $(cat "$T/psk.out")"

# a plaintext client is refused with the TLS-required error
rc=0
LIBNBD_DEBUG=1 bounded 30 nbdinfo "$PLAIN" >"$T/plain.out" 2>&1 || rc=$?
[ $rc -ne 0 ] || fail "--tls=require served a plaintext client"
grep -q 'server error message: this server requires TLS' "$T/plain.out" ||
	fail "no TLS-required error: $(grep -i 'error' "$T/plain.out")"
grep -q '^nbdinfo: .*Operation not supported' "$T/plain.out" ||
	fail "nbdinfo's message: $(grep '^nbdinfo' "$T/plain.out")"

# a client trusting another CA fails cleanly, and the next one is served
rc=0
bounded 30 nbdinfo "nbds://127.0.0.1:$PORT/disk?tls-certificates=$BAD" \
	>"$T/bad.out" 2>&1 || rc=$?
[ $rc -ne 0 ] || fail "a client trusting another CA connected"
grep -qi 'certificate' "$T/bad.out" || fail "wrong CA: $(cat "$T/bad.out")"
wait_until() { local i; for ((i = 0; i < 50 * SLOW; i++)); do "$@" && return 0; sleep 0.1; done; return 1; }
wait_until grep -q 'TLS handshake with 127\.0\.0\.1:[0-9]* failed: ' "$LOG" ||
	fail "no log line for the failed TLS handshake"
bounded 30 nbdinfo --size "$X509" | grep -qx "$SIZE" ||
	fail "not serving after a failed TLS handshake"

# bulk: 32 MiB through nbdcopy over TLS, in and out, checksums compared,
# on the memory export (replies sent by the reader thread) and on the file
# export (sent by worker threads while the reader receives)
head -c 32M /dev/urandom >"$T/bulk.img"
for x in disk file; do
	u="nbds://127.0.0.1:$PORT/$x?tls-certificates=$CAONLY"
	bounded 60 nbdcopy --flush "$T/bulk.img" "$u" || fail "nbdcopy into $x"
	bounded 60 nbdcopy "$u" "$T/back.img" || fail "nbdcopy out of $x"
	[ "$(head -c 32M "$T/back.img" | sum)" = "$(sum <"$T/bulk.img")" ] ||
		fail "nbdcopy over TLS: the data read back from $x differs"
done
[ "$(head -c 32M "$T/file.img" | sum)" = "$(sum <"$T/bulk.img")" ] ||
	fail "the file export's image does not hold what nbdcopy wrote"
# fio: random 4 KiB writes and reads, 16 in flight, every block verified
# (its nbd engine takes no file names in URIs: the CA goes where libnbd
# looks by default)
mkdir -p "$T/home/.pki/libnbd"
cp "$CAONLY/ca-cert.pem" "$T/home/.pki/libnbd/"
(cd "$T" && HOME=$T/home bounded 60 fio --name=tls --ioengine=nbd \
	--uri="nbds://127.0.0.1:$PORT/file" --rw=randrw --bs=4k --iodepth=16 \
	--size=16M --verify=crc32c --verify_fatal=1 --output-format=json \
	--output="$T/fio.json" >"$T/fio.log" 2>&1) || fail "fio over TLS: $(cat "$T/fio.log")"
python3 - "$T/fio.json" <<'EOF' || fail "fio report: $(cat "$T/fio.json")"
import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0]
assert j["error"] == 0, "fio error %d" % j["error"]
r, w = j["read"]["total_ios"], j["write"]["total_ios"]
assert r > 500 and w > 500, (r, w)
print("fio over TLS: %d reads, %d writes, verified" % (r, w))
EOF
stop_daemon
grep -q 'client entering transmission .*, TLS$' "$LOG" ||
	fail "the log does not say clients used TLS"

# ---- --tls=on: the client's choice ----
# (a short handshake deadline, longer where the daemon runs slowed down)
tls_daemon on --handshake-timeout "$SLOW"
bounded 30 nbdinfo "$PLAIN" | grep -q 'without TLS' || fail "--tls=on: plaintext"
bounded 30 nbdinfo "$X509" | grep -q 'with TLS' || fail "--tls=on: X.509"
bounded 30 nbdinfo "$PSK" | grep -q 'with TLS' || fail "--tls=on: PSK"
# The handshake's deadline ends with the handshake: a TLS client idle for
# longer is still served, both ways.
IDLE=$SLOW.5 PSK_URI=$PSK bounded 30 nbdsh -c '
import os, time
h.set_uri_allow_local_file(True)
h.connect_uri(os.environ["PSK_URI"])
h.pwrite(b"\x5a" * 4096, 0)
time.sleep(float(os.environ["IDLE"]))  # what is tested: idle past the deadline
h.pwrite(b"\x3c" * 4096, 4096)
assert h.pread(8192, 0) == b"\x5a" * 4096 + b"\x3c" * 4096
' || fail "a TLS client idle past the handshake deadline lost its connection"
stop_daemon

# ---- --tls-verify-peer: clients need a certificate from our CA ----
tls_daemon require --tls-verify-peer
bounded 30 nbdinfo --size "nbds://127.0.0.1:$PORT/disk?tls-certificates=$CLI" |
	grep -qx "$SIZE" || fail "a client with a certificate was refused"
rc=0
bounded 30 nbdinfo "$X509" >"$T/nocert.out" 2>&1 || rc=$?
[ $rc -ne 0 ] || fail "--tls-verify-peer let in a client without a certificate"
wait_until grep -q 'TLS handshake with 127\.0\.0\.1:[0-9]* failed: .*certificate' "$LOG" ||
	fail "no log line naming the missing client certificate"
stop_daemon

# ---- start-up errors name the file and the fix ----
run() { "$NBDD_BIN" --control "$CTL" --listen "tcp:$PORT" --export d=memory:size=1M "$@"; }
expect 2 "--tls=on needs --tls-certificates DIR or --tls-psk FILE" run --tls=on
expect 2 "need --tls=on or --tls=require" run --tls-psk "$T/keys.psk"
expect 2 "--tls=maybe: use off, on or require" run --tls=maybe
expect 1 "TLS certificate $CAONLY/server-cert.pem: no such file" run --tls=on --tls-certificates "$CAONLY"
expect 1 "TLS certificates directory $T/nowhere: No such file" run --tls=on --tls-certificates "$T/nowhere"
chmod 0644 "$PKI/server-key.pem"
expect 1 "others may read or change it (mode 0644); chmod 0600" \
	run --tls=on --tls-certificates "$PKI"
chmod 0600 "$PKI/server-key.pem"
printf 'alice:74c3\nbob-without-a-key\n' >"$T/broken.psk"
chmod 0600 "$T/broken.psk"
expect 1 "broken.psk, line 2: expected USERNAME:HEXKEY" run --tls=on --tls-psk "$T/broken.psk"
[ ! -e "$CTL" ] || fail "a failed start left its control socket"
echo "ok"
