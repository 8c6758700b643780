"""The persistent code cache: compiled blocks as object files on disk.

Blocks are compiled a module at a time (several blocks share one object),
so the cache has two kinds of file under ``<cache dir>/<JIT version>/``:

  o_<sha256>.bin   one object file: a header line (magic, format version,
                   SHA-256 of the object bytes, a JSON description of every
                   block in it: instruction count and exit slots) and the bytes
  <block>.idx      for each block key (a hash of the JIT version, the guest
                   code bytes, their address and the CPU mode): the SHA-256 of
                   the object holding it

Anything that does not check out (wrong magic or version, a digest that does
not match, unreadable JSON, a block missing from its object's description, a
short file) is treated as absent and removed: the cache is an accelerator and
is never trusted.  Writes go to a temporary file renamed into place, so a
crash cannot leave a half-written file under a valid name.

The names of the index files are read once, when the first lookup is made;
after that a block that is not in the cache costs a set lookup, not a failed
``open`` (a Linux boot looks up ~100k blocks that were never compiled).
Entries another process adds meanwhile are not seen until the next run.
"""
import atexit
import hashlib
import json
import os
import queue
import re
import threading

MAGIC = b"EMUJIT2"
_HEX = re.compile(r"^[0-9a-f]{64}$")


class CodeCache:
    def __init__(self, directory, version):
        if directory is None:
            from .jit import default_cache_dir
            directory = default_cache_dir()
        self.dir = os.path.join(directory, version)
        self.version = version
        self.rejected = 0           # files found corrupt or foreign, and removed
        self.ok = True
        self._q = None
        self._seq = 0
        self._names = None          # block names with an index file (read on first use)
        try:
            os.makedirs(self.dir, exist_ok=True)
        except OSError:
            self.ok = False         # e.g. a read-only home: run without a cache

    def _index(self):
        names = self._names
        if names is None:
            names = set()
            try:
                with os.scandir(self.dir) as it:
                    for e in it:
                        if e.name.endswith(".idx"):
                            names.add(e.name[:-4])
            except OSError:
                pass
            self._names = names
        return names

    def has_entries(self):
        return self.ok and bool(self._index())

    def _obj_path(self, sha):
        return os.path.join(self.dir, "o_%s.bin" % sha)

    def _idx_path(self, name):
        return os.path.join(self.dir, name + ".idx")

    def _remove(self, path):
        self.rejected += 1
        try:
            os.unlink(path)
        except OSError:
            pass

    def get(self, name):
        """(object sha, object bytes, {block: meta}) holding block ``name``, or None."""
        if not self.ok or name not in self._index():
            return None
        ip = self._idx_path(name)
        try:
            with open(ip, "rb") as f:
                sha = f.read(200).decode("ascii", "replace").strip()
        except OSError:
            return None
        if not _HEX.match(sha):
            self._remove(ip)
            return None
        op = self._obj_path(sha)
        try:
            with open(op, "rb") as f:
                data = f.read()
        except OSError:
            self._remove(ip)
            return None
        try:
            head, obj = data.split(b"\n", 1)
            magic, version, digest, meta = head.split(b" ", 3)
            if magic != MAGIC or version.decode() != self.version:
                raise ValueError("another format or JIT version")
            if digest.decode() != sha or hashlib.sha256(obj).hexdigest() != sha:
                raise ValueError("digest mismatch")
            metas = json.loads(meta)
            if not isinstance(metas, dict) or name not in metas:
                raise ValueError("block not described")
            for m in metas.values():
                if not (isinstance(m, dict) and isinstance(m.get("n"), int) and m["n"] > 0
                        and isinstance(m.get("slots"), int) and 0 <= m["slots"] < 64):
                    raise ValueError("bad block description")
        except (ValueError, UnicodeDecodeError):
            self._remove(op)
            self._remove(ip)
            return None
        return sha, obj, metas

    def put_later(self, obj, metas):
        """``put`` on a background thread: file creation costs more than the
        guest can spare on a cold boot (the files are written in order; a
        crash loses at most what is queued, never leaves a wrong file)."""
        if not self.ok:
            return
        if self._q is None:
            self._q = queue.Queue()
            t = threading.Thread(target=self._writer, daemon=True, name="emu-jit-cache")
            t.start()
            atexit.register(self.flush)      # what is queued reaches the disk
        self._q.put((obj, metas))

    def _writer(self):
        while True:
            item = self._q.get()
            try:
                if item is None:
                    return
                self.put(*item)
            finally:
                self._q.task_done()

    def flush(self):
        """Wait until every queued object is on disk."""
        if self._q is not None:
            self._q.join()

    def put(self, obj, metas):
        """Store an object holding the blocks described by ``metas``; returns its sha."""
        sha = hashlib.sha256(obj).hexdigest()
        if not self.ok:
            return sha
        head = b" ".join((MAGIC, self.version.encode(), sha.encode(),
                          json.dumps(metas, separators=(",", ":")).encode()))
        try:
            self._write(self._obj_path(sha), head + b"\n" + obj)
            for name in metas:
                self._write(self._idx_path(name), sha.encode())
                if self._names is not None:
                    self._names.add(name)
        except OSError:
            pass
        return sha

    def _write(self, path, data):
        # a name of our own (pid, thread, counter): another process writing
        # the same entry uses another temporary file; os.replace is atomic
        self._seq += 1
        tmp = "%s.%d.%d.%d.tmp" % (path, os.getpid(), threading.get_ident(), self._seq)
        try:
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
