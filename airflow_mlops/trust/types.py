"""Which types a stored model file (skops) may contain.

skops never unpickles: it rebuilds objects from a JSON schema, calling the constructor (or function) each
node names. So a file that names ``builtins.exec`` with a payload string would run that payload while
loading, if the loader trusted ``builtins.exec``. The rules here:

1. Every type a file references is collected from its schema (:func:`referenced_types`), including the
   ones skops itself trusts by default.
2. Any of them that can execute code, import, touch files or processes, or reach arbitrary attributes
   (:func:`is_dangerous`) refuses the file, **whatever a trusted list says**.
3. Every type skops does not trust by default must be listed by its fully qualified name: the
   scikit-learn/numpy helper types pipelines need (:data:`TRUSTED_TYPES`), the package's own pipeline
   helpers, and the classes a model's config names (recorded in the version's signed metadata). Never a
   module prefix.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterable

#: Types outside skops' own defaults that the pipelines of this package contain (found by fitting every
#: estimator the docs list; tests/security/test_model_trust.py keeps the list honest). Fully qualified
#: names only: a new type needs a new line here or a ``trusted_types`` entry in the model's config.
TRUSTED_TYPES: frozenset[str] = frozenset({
    "numpy.dtype",
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.neighbors._kd_tree.KDTree",
    "sklearn.neighbors._ball_tree.BallTree",
    "sklearn.metrics._dist_metrics.EuclideanDistance64",
    "sklearn.metrics._dist_metrics.ManhattanDistance64",
    "sklearn.metrics._dist_metrics.ChebyshevDistance64",
    "sklearn.metrics._dist_metrics.MinkowskiDistance64",
    "sklearn._loss.link.Interval",
    "sklearn._loss.link.LogitLink",
    "sklearn._loss.link.IdentityLink",
    "sklearn._loss.link.LogLink",
    "sklearn._loss.link.MultinomialLogit",
    "sklearn._loss.loss.HalfBinomialLoss",
    "sklearn._loss.loss.HalfMultinomialLoss",
    "sklearn._loss.loss.HalfSquaredError",
    "sklearn._loss.loss.AbsoluteError",
    "sklearn._loss.loss.HalfPoissonLoss",
    "sklearn._loss._loss.CyHalfBinomialLoss",
    "sklearn._loss._loss.CyHalfMultinomialLoss",
    "sklearn._loss._loss.CyHalfSquaredError",
    "sklearn._loss._loss.CyAbsoluteError",
    "sklearn._loss._loss.CyHalfPoissonLoss",
})

#: Builtins a model may contain: plain data types. Every other ``builtins.*`` name (exec, eval, compile,
#: __import__, getattr, open, type, object, ...) is refused, whatever a trusted list says.
SAFE_BUILTINS: frozenset[str] = frozenset(
    f"builtins.{n}" for n in ("dict", "list", "tuple", "set", "frozenset", "str", "int", "float", "bool",
                              "complex", "bytes", "bytearray", "slice", "range", "NoneType")
)

#: Modules none of whose members may appear in a model: they execute code, import, spawn processes, open
#: files or sockets, unpickle, or reach arbitrary attributes.
DANGEROUS_MODULES: tuple[str, ...] = (
    "os", "posix", "nt", "posixpath", "ntpath", "sys", "subprocess", "_posixsubprocess", "importlib",
    "pkgutil", "runpy", "imp", "zipimport", "pickle", "_pickle", "cPickle", "marshal", "shelve", "dill",
    "cloudpickle", "joblib", "shutil", "socket", "_socket", "ssl", "http", "urllib", "ftplib", "smtplib",
    "telnetlib", "webbrowser", "ctypes", "_ctypes", "cffi", "pty", "multiprocessing", "concurrent",
    "threading", "_thread", "signal", "code", "codeop", "pdb", "bdb", "inspect", "types", "operator",
    "_operator", "functools", "io", "_io", "pathlib", "tempfile", "glob", "fileinput", "gc", "weakref",
    "asyncio", "sched", "atexit", "site", "sysconfig", "platform", "resource", "fcntl", "mmap",
    "numpy.lib.npyio", "numpy.load", "numpy.ctypeslib", "numpy.f2py", "numpy.distutils", "numpy.testing",
    "pandas.io", "torch", "airflow",
)

#: Single callables refused outside the modules above (reading files, evaluating text, unpickling).
DANGEROUS_NAMES: frozenset[str] = frozenset({
    "numpy.load", "numpy.loadtxt", "numpy.genfromtxt", "numpy.fromfile", "numpy.memmap", "numpy.save",
    "numpy.savez", "numpy.tofile", "numpy.frompyfunc", "numpy.vectorize", "numpy.piecewise",
    "numpy.apply_along_axis", "numpy.apply_over_axes",
    "pandas.read_pickle", "pandas.eval", "pandas.read_csv", "pandas.read_parquet", "pandas.read_json",
    "pandas.read_sql", "pandas.read_html", "pandas.read_excel", "pandas.core.computation.eval.eval",
    "scipy.io.loadmat", "scipy.io.savemat", "scipy.sparse.load_npz", "sklearn.utils._joblib.load",
    "skops.io.load", "skops.io.loads",
})


def is_dangerous(type_name: str) -> bool:
    """Whether a fully qualified name may execute code, import, or reach files/processes/attributes."""
    name = str(type_name)
    module, _, attr = name.rpartition(".")
    if module == "builtins" or name.startswith("builtins."):
        return name not in SAFE_BUILTINS
    if name in DANGEROUS_NAMES or attr in ("__import__", "__builtins__", "__getattribute__", "__reduce__",
                                           "__reduce_ex__", "__setstate__", "__subclasses__", "__globals__",
                                           "__code__", "eval", "exec", "compile", "system", "popen"):
        return True
    return any(name == m or name.startswith(m + ".") for m in DANGEROUS_MODULES)


def referenced_types(data: bytes, source: str = "<bytes>") -> set[str]:
    """Every fully qualified type or function name a skops payload references (constructor nodes,
    function nodes, type nodes, method owners), read from its ``schema.json`` without building anything."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            schema = json.loads(zf.read("schema.json"))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as e:
        raise ValueError(f"{source} is not a readable skops file: {e}") from None
    found: set[str] = set()
    stack: list[object] = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            module, cls = node.get("__module__"), node.get("__class__")
            if isinstance(module, str) and isinstance(cls, str):
                found.add(f"{module}.{cls}")
            module, func = node.get("module_path"), node.get("function")
            if isinstance(module, str) and isinstance(func, str):
                found.add(f"{module}.{func}")
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


#: Types inside a fitted estimator of a gradient-boosting library, beyond the estimator class itself: skops
#: stores their state as the library's own model format (xgboost UBJSON, LightGBM model text, CatBoost cbm
#: bytes) and rebuilds them through ``__setstate__``; no code is named in the file. Trusted only for a model
#: whose config names an estimator of that library (checked in tests/byo).
LIBRARY_TYPES: dict[str, tuple[str, ...]] = {
    "xgboost": ("xgboost.core.Booster",),
    "lightgbm": ("lightgbm.basic.Booster", "collections.OrderedDict"),
    "catboost": (),
}


def model_trusted_types(estimator_class: str, extra: Iterable[str] = ()) -> list[str]:
    """The types one model's file may hold beyond :data:`TRUSTED_TYPES`: the estimator class its config names
    (as skops names it, ``module.Class`` of the defining module), the helper types of that class's library
    (:data:`LIBRARY_TYPES`) and the config's ``estimator.trusted_types``. scikit-learn's own estimators need
    none. A dangerous name is refused here as well (``ValueError``)."""
    names = [] if estimator_class.startswith("sklearn.") else [estimator_class]
    names += LIBRARY_TYPES.get(estimator_class.split(".", 1)[0], ())
    names += [str(t) for t in extra]
    bad = dangerous_types(names)
    if bad:
        raise ValueError(f"type(s) {bad} can run code and are never trusted in a model file")
    return list(dict.fromkeys(names))


def dangerous_types(names: Iterable[str]) -> list[str]:
    return sorted({n for n in names if is_dangerous(n)})


__all__ = ["DANGEROUS_MODULES", "DANGEROUS_NAMES", "LIBRARY_TYPES", "SAFE_BUILTINS", "TRUSTED_TYPES",
           "dangerous_types", "is_dangerous", "model_trusted_types", "referenced_types"]
