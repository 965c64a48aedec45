# SPDX-License-Identifier: LGPL-2.1-or-later
"""A deliberately rude NBD client for tests/interop/hostile-*.sh.

Raw bytes on a Unix socket: every length field can lie. Each hostile test
imports this, does one bad thing, and then checks with a polite client
that the daemon still serves and that earlier data is intact.
"""
import os
import socket
import struct
import sys
import time

NBDMAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
OPT_REPLY_MAGIC = 0x3E889045565A9
REQ_MAGIC = 0x25609513
EXT_REQ_MAGIC = 0x21E41C71
SIMPLE_REPLY_MAGIC = 0x67446698
STRUCTURED_REPLY_MAGIC = 0x668E33EF
EXTENDED_REPLY_MAGIC = 0x6E8A278C

OPT_EXPORT_NAME, OPT_ABORT, OPT_LIST, OPT_PEEK_EXPORT, OPT_STARTTLS = 1, 2, 3, 4, 5
OPT_INFO, OPT_GO, OPT_STRUCTURED_REPLY = 6, 7, 8
OPT_LIST_META_CONTEXT, OPT_SET_META_CONTEXT, OPT_EXTENDED_HEADERS = 9, 10, 11

REP_ACK, REP_SERVER, REP_INFO, REP_META_CONTEXT = 1, 2, 3, 4
REP_ERR = 1 << 31
REP_ERR_UNSUP, REP_ERR_POLICY, REP_ERR_INVALID = REP_ERR | 1, REP_ERR | 2, REP_ERR | 3
REP_ERR_PLATFORM, REP_ERR_TLS_REQD, REP_ERR_UNKNOWN = REP_ERR | 4, REP_ERR | 5, REP_ERR | 6
REP_ERR_SHUTDOWN, REP_ERR_BLOCK_SIZE_REQD, REP_ERR_TOO_BIG = REP_ERR | 7, REP_ERR | 8, REP_ERR | 9

INFO_EXPORT, INFO_NAME, INFO_DESCRIPTION, INFO_BLOCK_SIZE = 0, 1, 2, 3

CMD_READ, CMD_WRITE, CMD_DISC, CMD_FLUSH, CMD_TRIM = 0, 1, 2, 3, 4
CMD_CACHE, CMD_WRITE_ZEROES, CMD_BLOCK_STATUS = 5, 6, 7
F_FUA, F_REQ_ONE, F_PAYLOAD_LEN = 1, 8, 32
FLAG_READ_ONLY, FLAG_SEND_FLUSH = 2, 4

EINVAL, EPERM, ENOSPC, EOVERFLOW, ENOTSUP = 22, 1, 28, 75, 95

REPLY_TYPE_NONE, REPLY_TYPE_OFFSET_DATA, REPLY_TYPE_OFFSET_HOLE = 0, 1, 2
REPLY_TYPE_BLOCK_STATUS, REPLY_TYPE_BLOCK_STATUS_EXT = 5, 6
REPLY_TYPE_ERROR, REPLY_TYPE_ERROR_OFFSET = 32769, 32770

TIMEOUT = float(os.environ.get("HOSTILE_TIMEOUT", "20"))


class Fail(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Fail(what)


def log(*a):
    print(*a, flush=True)


class Conn:
    def __init__(self, path, timeout=TIMEOUT):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(timeout)
        self.s.connect(path)
        self.extended = False
        self.structured = False
        self._off = 0

    def close(self):
        self.s.close()

    def send(self, b):
        self.s.sendall(b)

    def send_rude(self, b):
        """Send what the server may hang up on halfway: a reset or a
        broken pipe then is an answer, not an error of the test."""
        try:
            self.s.sendall(b)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def recv_exact(self, n):
        buf = bytearray()
        while len(buf) < n:
            chunk = self.s.recv(min(n - len(buf), 1 << 20))
            if not chunk:
                raise EOFError("server closed after %d of %d bytes" %
                               (len(buf), n))
            buf += chunk
        return bytes(buf)

    def closed_within(self, seconds):
        """True if the server closes (EOF or reset) within @seconds;
        anything it sends meanwhile is read and dropped."""
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return False
            self.s.settimeout(left)
            try:
                if not self.s.recv(65536):
                    return True
            except socket.timeout:
                return False
            except (ConnectionResetError, BrokenPipeError):
                return True

    # ---- handshake ----
    def greeting(self, flags=3):
        magic, opt, hflags = struct.unpack(">QQH", self.recv_exact(18))
        check(magic == NBDMAGIC and opt == IHAVEOPT,
              "bad greeting %x %x" % (magic, opt))
        check(hflags & 1, "server is not fixed-newstyle")
        self.send(struct.pack(">I", flags))
        return hflags

    def option(self, opt, data=b""):
        self.send(struct.pack(">QII", IHAVEOPT, opt, len(data)) + data)

    def option_header(self, opt, length):
        """Send an option header that claims @length bytes follow."""
        self.send(struct.pack(">QII", IHAVEOPT, opt, length))

    def reply(self):
        magic, opt, rtype, length = struct.unpack(">QIII",
                                                  self.recv_exact(20))
        check(magic == OPT_REPLY_MAGIC, "bad option reply magic %x" % magic)
        check(length <= 1 << 20, "option reply of %d bytes" % length)
        return opt, rtype, self.recv_exact(length)

    def replies_until_final(self, opt):
        """All replies to @opt up to ACK or an error; returns them."""
        out = []
        while True:
            o, t, d = self.reply()
            check(o == opt, "reply to option %d while waiting for %d" %
                  (o, opt))
            out.append((t, d))
            if t == REP_ACK or t & REP_ERR:
                return out

    def go(self, name="", infos=(), opt=OPT_GO):
        n = name.encode() if isinstance(name, str) else name
        self.option(opt, struct.pack(">I", len(n)) + n +
                    struct.pack(">H", len(infos)) +
                    b"".join(struct.pack(">H", i) for i in infos))
        size = eflags = None
        for t, d in self.replies_until_final(opt):
            if t == REP_INFO and struct.unpack(">H", d[:2])[0] == INFO_EXPORT:
                size, eflags = struct.unpack(">QH", d[2:12])
            elif t & REP_ERR:
                return t, None, None
        return REP_ACK, size, eflags

    def connect_export(self, name="", structured=False, extended=False):
        """Greeting, optional reply modes, GO; returns (size, eflags)."""
        self.greeting()
        if extended:
            self.option(OPT_EXTENDED_HEADERS)
            t = self.replies_until_final(OPT_EXTENDED_HEADERS)[-1][0]
            check(t == REP_ACK, "extended headers refused: %x" % t)
            self.extended = self.structured = True
        elif structured:
            self.option(OPT_STRUCTURED_REPLY)
            t = self.replies_until_final(OPT_STRUCTURED_REPLY)[-1][0]
            check(t == REP_ACK, "structured replies refused: %x" % t)
            self.structured = True
        if self.structured:
            n = name.encode()
            q = b"base:allocation"
            self.option(OPT_SET_META_CONTEXT, struct.pack(">I", len(n)) + n +
                        struct.pack(">II", 1, len(q)) + q)
            self.replies_until_final(OPT_SET_META_CONTEXT)
        t, size, eflags = self.go(name)
        check(t == REP_ACK, "GO %r refused: %x" % (name, t))
        check(size is not None, "GO gave no NBD_INFO_EXPORT")
        return size, eflags

    # ---- transmission ----
    def request(self, cmd, offset=0, length=0, flags=0, cookie=1, data=b""):
        if self.extended:
            if data:
                flags |= F_PAYLOAD_LEN
            hdr = struct.pack(">IHHQQQ", EXT_REQ_MAGIC, flags, cmd, cookie,
                              offset, length)
        else:
            hdr = struct.pack(">IHHQQI", REQ_MAGIC, flags, cmd, cookie,
                              offset, length)
        self.send(hdr + data)

    def simple_reply(self):
        magic, err, cookie = struct.unpack(">IIQ", self.recv_exact(16))
        check(magic == SIMPLE_REPLY_MAGIC, "bad reply magic %x" % magic)
        return err, cookie

    def chunk(self):
        if self.extended:
            magic, flags, typ, cookie, off, length = struct.unpack(
                ">IHHQQQ", self.recv_exact(32))
            check(magic == EXTENDED_REPLY_MAGIC, "bad magic %x" % magic)
        else:
            magic, flags, typ, cookie, length = struct.unpack(
                ">IHHQI", self.recv_exact(20))
            check(magic in (STRUCTURED_REPLY_MAGIC, SIMPLE_REPLY_MAGIC),
                  "bad magic %x" % magic)
            if magic == SIMPLE_REPLY_MAGIC:
                # a simple reply is 16 bytes: we read 4 too many only if
                # a read follows; structured clients get simple replies
                # only for non-read commands, which have no payload
                raise Fail("simple reply on a structured connection")
        check(length <= 64 << 20, "chunk of %d bytes" % length)
        return flags, typ, cookie, self.recv_exact(length)

    def result(self, cookie, read_len=0):
        """Wait for the reply to @cookie; returns (error, data)."""
        if not self.structured:
            err, c = self.simple_reply()
            check(c == cookie, "reply for cookie %d, expected %d" % (c, cookie))
            data = self.recv_exact(read_len) if read_len and not err else b""
            return err, data
        data = bytearray(read_len)
        err = 0
        while True:
            flags, typ, c, payload = self.chunk()
            check(c == cookie, "chunk for cookie %d, expected %d" % (c, cookie))
            if typ == REPLY_TYPE_OFFSET_DATA:
                off = struct.unpack(">Q", payload[:8])[0]
                data[off - self._off:off - self._off + len(payload) - 8] = payload[8:]
            elif typ == REPLY_TYPE_OFFSET_HOLE:
                pass  # zeroes already
            elif typ & 0x8000:
                err = struct.unpack(">I", payload[:4])[0]
            if flags & 1:
                return err, bytes(data)

    def read(self, offset, length, cookie=7):
        self._off = offset
        self.request(CMD_READ, offset, length, cookie=cookie)
        return self.result(cookie, length)

    def write(self, offset, data, cookie=8, flags=0):
        self.request(CMD_WRITE, offset, len(data), flags, cookie, data)
        return self.result(cookie)[0]

    def cmd(self, cmd, offset=0, length=0, flags=0, cookie=9):
        self._off = offset
        self.request(cmd, offset, length, flags, cookie)
        return self.result(cookie)[0]

    def disconnect(self):
        self.request(CMD_DISC)
        self.close()


def pattern(n, seed):
    return bytes((i * 7 + seed) & 0xFF for i in range(n))


def main(test):
    """Run @test(sock_path); exit 0 on success, 1 with the reason."""
    path = os.environ["NBD_SOCK"]
    try:
        test(path)
    except (Fail, EOFError, OSError) as e:
        log("FAIL:", type(e).__name__, e)
        sys.exit(1)
    log("ok")


# ---- the polite client that checks the daemon survived ----
PRIME_OFF = 1 << 20
PRIME = pattern(64 * 1024, 42)


def prime(path, name=""):
    """Store a known pattern, flushed, through a well-behaved client."""
    c = Conn(path)
    c.connect_export(name)
    check(c.write(PRIME_OFF, PRIME) == 0, "priming write failed")
    check(c.cmd(CMD_FLUSH) == 0, "priming flush failed")
    c.disconnect()


def verify(path, name="", data=PRIME, off=PRIME_OFF):
    """A new client is served and reads back what prime() stored."""
    c = Conn(path)
    c.connect_export(name)
    err, got = c.read(off, len(data))
    check(err == 0, "read after the attack failed: error %d" % err)
    check(got == data, "data written before the attack has changed")
    c.disconnect()
