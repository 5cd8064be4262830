"""Helper modules for the tests, the demo and the benchmarks; not part of the installed package.

Imported one way everywhere, as ``tools.<module>`` with the repository root on ``sys.path``:
pytest's ``pythonpath`` setting in pyproject.toml puts it there for the tests, and
``tools/demo.py`` and ``benchmarks/*.py`` insert it themselves.

* :mod:`tools.samples`: real sample images from Debian packages (tests, demo, benchmarks);
* :mod:`tools.bench_data` and :mod:`tools.photo_recipe`: benchmark-sized folders built from them.
"""
