"""Measuring code behind ``tools/analysis/benchmark.py`` (see docs/benchmark.md).

Kept out of the ``rsvheat_mm`` package on purpose: it changes process-wide
state that a library must not touch (glibc ``mallopt``, ``/proc/self/clear_refs``,
``gc.freeze``) and is needed by no model. One module per job:

========================  ==================================================
``flops.py``              FLOPs on fake tensors; formulas torch lacks; ops
``memory.py``             step peak / activation memory, tensor peak
``resident.py``           resident growth of a fresh process (inference)
``timing.py``             warm-up and timed steps
``growth.py``             power-law fits (scaling, budget predictions)
``zoo.py``                the compared models, built from the model classes
``measure.py``            one measurement (model, size, batch, mode)
``environment.py``        device, CPU flags (bf16), versions, commit
``report.py``             ratios, Markdown tables, JSON
``plots.py``              the PNG figures
``dct_profile.py``        GEMM vs fast DCTs per axis length
``device_checks.py``      CUDA-vs-CPU parity, autocast training (gpu_check.sh)
========================  ==================================================

How it is imported: ``python tools/analysis/benchmark.py`` puts the script's
folder, ``tools/analysis``, first on ``sys.path`` (Python does this for every
script), so the CLI imports this package as plain ``benchmarking``. Anything
else that wants it -- the tests, :mod:`.resident`'s subprocesses,
``gpu_check.sh`` -- puts ``tools/analysis`` on ``PYTHONPATH`` (or loads the
package by path, see ``tests/helpers.py``). The modules import each other
relatively and import ``rsvheat_mm`` as installed (``make install``).
"""
