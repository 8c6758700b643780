"""Compiling in a second process, so that the guest keeps running meanwhile.

LLVM holds one global lock: compiling in a thread gains nothing, a separate
process does run in parallel (JIT_NOTES.md, trap 6).  The worker receives
module IR text and returns object bytes; the JIT keeps interpreting the
blocks of a module until its object comes back, then installs them.  (The
IR is written on the guest's thread: with it in the worker too, the worker
fell behind on a cold Linux boot and the boot took 4 s longer.)  Results
are the same either way (the virtual clock counts instructions, whichever
tier runs them); only wall-clock time changes.

The worker is ``python -m emu.translate.compile_worker`` talking
length-prefixed pickles over its stdin/stdout (not multiprocessing: its
"spawn" start method re-imports the parent's ``__main__``, which may be a
user's script that boots a machine).  It is started on first use and stopped
when the JIT goes away or at exit.  If it cannot be started, or dies, the
JIT compiles in-process.
"""
import os
import pickle
import queue
import select
import struct
import subprocess
import sys
import threading
import time

_LEN = struct.Struct("<I")


def _read_msg(f):
    head = f.read(4)
    if len(head) < 4:
        return None
    (n,) = _LEN.unpack(head)
    data = f.read(n)
    if len(data) < n:
        return None
    return pickle.loads(data)


def _write_msg(f, obj):
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    f.write(_LEN.pack(len(data)) + data)
    f.flush()


def main():
    from . import llvm_engine
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr              # nothing else may write to the pipe
    llvm_engine.initialise()
    while True:
        msg = _read_msg(inp)
        if msg is None:
            return
        job, text, optimise, names, model = msg
        try:
            llvm_engine.set_runtime(names, None)       # declared, never loaded here
            t0 = time.thread_time()
            obj = llvm_engine.compile_object(text, optimise=optimise, model=model)
            _write_msg(out, (job, obj, (time.thread_time() - t0) * 1e3))
        except Exception:                               # compiled in-process instead
            _write_msg(out, (job, None, None))


class CompileWorker:
    def __init__(self):
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = dict(os.environ)
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self.proc = subprocess.Popen([sys.executable, "-m", "emu.translate.compile_worker"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
                                     close_fds=True)
        self.next_job = 0
        self.inflight = {}
        self._alive_at = -1.0
        self._alive = True
        # a thread feeds the worker: a blocking write here while the worker
        # waits for us to read its results would deadlock on full pipes
        self.outq = queue.Queue()
        self.writer = threading.Thread(target=self._feed, daemon=True, name="emu-jit-feed")
        self.writer.start()

    def _feed(self):
        f = self.proc.stdin
        while True:
            msg = self.outq.get()
            if msg is None:
                break
            try:
                _write_msg(f, msg)
            except (OSError, ValueError):
                break
        try:
            f.close()
        except OSError:
            pass

    def submit(self, text, optimise, names, payload, model="small"):
        """Queue a module (compiled for code ``model``); ``payload`` comes back
        with its object."""
        if not self.alive():
            raise OSError("the compile worker has exited")
        job = self.next_job
        self.next_job += 1
        self.inflight[job] = payload
        self.outq.put((job, text, optimise, tuple(names), model))
        return job

    def poll(self):
        """Finished jobs: a list of (payload, object bytes or None, compile ms)."""
        out = []
        f = self.proc.stdout
        while self.inflight:
            r, _, _ = select.select([f], [], [], 0)
            if not r:
                break
            msg = _read_msg(f)
            if msg is None:                 # the worker is gone
                break
            job, obj, ms = msg
            payload = self.inflight.pop(job, None)
            if payload is not None:
                out.append((payload, obj, ms))
        return out

    def wait(self, timeout):
        """True when a result is ready (or the worker is gone)."""
        r, _, _ = select.select([self.proc.stdout], [], [], timeout)
        return bool(r) or not self.alive()

    def alive(self):
        # waitpid costs a system call: a cold Linux boot asks ~10k times, so
        # look at most every 0.2 s (a dead worker is also seen as EOF in poll)
        now = time.monotonic()
        if now - self._alive_at > 0.2:
            self._alive_at = now
            self._alive = self.proc.poll() is None
        return self._alive

    def close(self):
        self.outq.put(None)
        self.writer.join(timeout=2)
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        try:
            self.proc.stdout.close()
        except OSError:
            pass


if __name__ == "__main__":
    main()
