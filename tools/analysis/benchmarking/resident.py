"""Inference memory as a process sees it: resident growth of a fresh process.

A library runs inside other people's processes, and what they see is the
process's memory: activations, allocator slack, thread pools and whatever the
model keeps between forwards (RS-vHeat's resolution cache, the shared DCT
bases). So, per model, size and batch, a *fresh* Python process (earlier
models' freed memory cannot mask anything in it):

1. imports, builds the model for the benchmark's ``--pretrain-size``, moves it
   to the device, makes the input, collects garbage and returns freed heap to
   the OS (``malloc_trim``), resets the resident high-water mark and reads
   ``VmRSS`` -- *before the first forward*;
2. runs ``forwards`` inference forwards (eval, ``torch.inference_mode``,
   ``--amp`` autocast), dropping each output, reading ``VmRSS`` after each;
3. reports ``VmHWM - before`` (**peak growth**, caches included) and
   ``VmRSS - before`` after the last forward (**kept**: what the process
   holds on to between forwards), on CUDA also the growth of the caching
   allocator's reserve and of allocated tensor memory.

glibc's allocator keeps its default settings here (no ``mallopt``), as in a
user's process. :class:`FreshProcess` forks each such process from a server
that has only imported the libraries (see there); ``python -m
benchmarking.resident JSON`` (``tools/analysis`` on ``PYTHONPATH``) runs one
measurement in a new interpreter and prints ``RESIDENT_RESULT {json}``.
"""
import json
import os
import os.path as osp
import subprocess
import sys
import time

__all__ = ['FreshProcess', 'resident_growth', 'measure_in_this_process']

_MARK = 'RESIDENT_RESULT '
#: tools/analysis, the folder holding this package.
ANALYSIS_DIR = osp.dirname(osp.dirname(osp.abspath(__file__)))


def resident_growth(forward, forwards=3, device='cpu'):
    """Resident growth of this process over ``forwards`` calls of
    ``forward()`` from now (steps 1-3 of the module docstring, the model
    already built). Returns a dict of ``fresh_*`` figures in bytes."""
    import torch

    from .memory import process_memory, release_memory, reset_peak_rss

    device = torch.device(device)
    cuda = device.type == 'cuda'
    release_memory(device)
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
        reserved0 = torch.cuda.memory_reserved(device)
        allocated0 = torch.cuda.memory_allocated(device)
    reset_peak_rss()
    before = process_memory()['VmRSS']
    after_each = []
    t0 = time.perf_counter()
    for _ in range(forwards):
        forward()
        if cuda:
            torch.cuda.synchronize(device)
        after_each.append(process_memory()['VmRSS'] - before)
    seconds = time.perf_counter() - t0
    mem = process_memory()
    res = dict(fresh_rss_before_bytes=before,
               mem_fresh_rss_growth_bytes=max(0, mem['VmHWM'] - before),
               fresh_rss_kept_bytes=after_each[-1], fresh_rss_after_each_bytes=after_each,
               fresh_forwards=forwards, fresh_forward_seconds=seconds / max(forwards, 1))
    if cuda:
        res.update(
            fresh_cuda_reserved_growth_bytes=torch.cuda.max_memory_reserved(device) - reserved0,
            fresh_cuda_allocated_growth_bytes=torch.cuda.max_memory_allocated(device) -
            allocated0,
            fresh_cuda_kept_bytes=torch.cuda.memory_allocated(device) - allocated0)
    return res


def measure_in_this_process(model_name, size, batch, device='cpu', amp='none', forwards=3,
                            pretrain_size=None, tiny=False, threads=None, tf32=False):
    """Build the model, then :func:`resident_growth` of its inference
    forwards, in the calling process (which should be fresh)."""
    import torch

    from . import zoo
    from .measure import AMP_DTYPES

    if threads:
        torch.set_num_threads(threads)
    if tf32:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    device = torch.device(device)
    hw = tuple(size)
    model = zoo.build_model(model_name, tuple(pretrain_size or hw), tiny).to(device)
    model.eval()  # (some backbones' train() returns None: no chaining)
    x = torch.randn((batch, 3) + hw, device=device)
    dtype = AMP_DTYPES[amp]

    def forward():
        with torch.inference_mode(), torch.autocast(device.type, dtype=dtype,
                                                    enabled=dtype is not None):
            model(x)  # the output is dropped at once

    res = resident_growth(forward, forwards, device)
    res['fresh_cache_bytes'] = zoo.cache_bytes(model)
    return res


class FreshProcess:
    """``fresh(name, hw, batch)``: :func:`measure_in_this_process` in a fresh
    process with the benchmark's settings; returns its dict, or
    ``{'fresh_error': ...}`` if that process failed. ``expected_seconds``
    (the last measurement's wall time) lets the run budget plan ahead.

    Importing torch, the toolboxes and rsvheat_mm takes seconds to tens of
    seconds, so one *server* process (``python -m benchmarking.resident
    --serve``, started at the first call) imports them once, without running
    any model, and forks one child per measurement: each child starts from
    the server's memory -- imports only, no model ever ran there, no CUDA
    context, no thread pool -- and builds, runs and exits. Call
    :meth:`close` at the end (the benchmark does).
    """

    def __init__(self, args, timeout=1800):
        self.settings = dict(device=args.device, amp=args.amp, forwards=args.fresh_forwards,
                             pretrain_size=None if args.pretrain_size == 'input' else
                             list(args.pretrain_size), tiny=bool(args.tiny),
                             threads=args.threads, tf32=bool(args.tf32))
        self.timeout = timeout
        self.expected_seconds = 0.
        self._server = None
        self._stderr = None
        self._start()  # its imports overlap with the parent's first measurement

    def _env(self):
        import rsvheat_mm
        # This package and the very rsvheat_mm the parent uses, first.
        paths = [ANALYSIS_DIR, osp.dirname(osp.dirname(osp.abspath(rsvheat_mm.__file__)))]
        env = dict(os.environ)
        env['PYTHONPATH'] = os.pathsep.join(paths + [p for p in [env.get('PYTHONPATH')] if p])
        return env

    def _start(self):
        import queue
        import tempfile
        import threading
        self._stderr = tempfile.TemporaryFile(mode='w+')
        # The parent's interpreter options too (e.g. -S, -I): same packages.
        flags = getattr(subprocess, '_args_from_interpreter_flags', list)()
        self._server = subprocess.Popen(
            [sys.executable, *flags, '-m', 'benchmarking.resident', '--serve'], env=self._env(),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=True,
            bufsize=1, start_new_session=True)
        self._results = queue.Queue()

        def read(out, results):  # result lines (and None at EOF) into the queue
            for line in out:
                if line.startswith(_MARK):
                    results.put(line[len(_MARK):])
            results.put(None)

        threading.Thread(target=read, args=(self._server.stdout, self._results),
                         daemon=True).start()

    def _error_tail(self):
        self._stderr.seek(0)
        tail = self._stderr.read().strip().splitlines()[-3:]
        return ' | '.join(tail)[-400:]

    def close(self):
        if self._server is not None:
            import signal
            try:
                os.killpg(self._server.pid, signal.SIGKILL)
            except OSError:
                pass
            self._server.wait()
            self._server = None
            self._stderr.close()

    def __call__(self, name, hw, batch):
        import queue
        job = dict(self.settings, model_name=name, size=list(hw), batch=batch)
        t0 = time.monotonic()
        try:
            if self._server is None or self._server.poll() is not None:
                self.close()
                self._start()
            self._server.stdin.write(json.dumps(job) + '\n')
            self._server.stdin.flush()
            try:
                line = self._results.get(timeout=self.timeout)
            except queue.Empty:
                self.close()
                return dict(fresh_error=f'no result within {self.timeout} s')
            if line is None:  # the server died
                err = self._error_tail()
                self.close()
                return dict(fresh_error=f'the measuring process died: {err}')
            return json.loads(line)
        except (OSError, ValueError) as e:
            self.close()
            return dict(fresh_error=f'{type(e).__name__}: {e}')
        finally:
            self.expected_seconds = time.monotonic() - t0


def _serve():
    """The server of :class:`FreshProcess`: import, then one forked child
    per job line on stdin; each child prints ``RESIDENT_RESULT {json}``."""
    import traceback
    import torch  # noqa: F401  (imported once, here)
    from . import zoo  # noqa: F401  (rsvheat_mm and its toolbox plugins)
    try:
        import mmpretrain.models  # noqa: F401
    except ImportError:
        pass
    for line in sys.stdin:
        job = json.loads(line)
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:  # the fresh process
            code = 0
            try:
                res = measure_in_this_process(**job)
            except BaseException as e:  # noqa: BLE001 - reported to the parent
                traceback.print_exc()
                res = dict(fresh_error=f'{type(e).__name__}: {str(e)[:300]}')
                code = 1
            sys.stdout.write(_MARK + json.dumps(res) + '\n')
            sys.stdout.flush()
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(status):  # killed (e.g. out of memory): no result line
            sig = os.WTERMSIG(status)
            print(_MARK + json.dumps(dict(fresh_error=f'killed by signal {sig} (out of '
                                          'memory?)')), flush=True)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv == ['--serve']:
        return _serve()
    res = measure_in_this_process(**json.loads(argv[0]))
    print(_MARK + json.dumps(res), flush=True)


if __name__ == '__main__':
    main()
