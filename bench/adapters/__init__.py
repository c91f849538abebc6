"""Codec adapters: the contract, discovery (lazy) and loading.

The adapters layer; its modules: ``contract`` (what an adapter declares, ``CodecConfig``), ``options``
(declared options), ``discovery`` (finding adapters lazily), ``selection`` (codec specs to
configurations), all re-exported here (``bench.adapters`` is what adapters and the harness import
from); ``codec_tools`` (helpers for adapters that drive external binaries), ``reference_software``
(the VTM/HM driver), ``learned`` (bitstream, weights and complexity helpers for CompressAI-based
codecs) and ``tools`` (building vvenc/vvdec and Cool-chic's decoder from source).

An adapter is a Python module (or any object) with these attributes::

    NAME        = "jpeg"                        # unique codec name
    FAMILY      = "conventional"                # or "learned"
    DESCRIPTION = "JPEG via Pillow 13.0.0 ..."  # names the library and its version
    VERSION     = "Pillow 13.0.0, libjpeg-turbo 3.1"  # part of every result's cache key
    OPTIONS     = {"subsampling": Option("4:2:0", choices=("4:2:0", "4:2:2", "4:4:4"))}
                                                # or plain {"subsampling": "4:2:0"} (a str option); may be {}
    QUALITIES   = [5, 10, ..., 95]              # default quality sweep
    QUALITY_RANGE = (1, 100, 1)                 # optional: (lowest, highest, step; 0 = continuous):
                                                # qualities are validated against it and searched for target bpp
    CODE_FILES  = ["helper.py"]                 # optional: more files (relative to the module, or module
                                                # names) whose content is part of the cache key

    def encode(rgb, quality, **options) -> bytes   # rgb: numpy uint8 array H x W x 3
    def decode(data, **options) -> numpy uint8 H x W x 3

    def setup(**options) -> dict     # optional: {"version", "qualities", "info", "options", "family"} for
                                     # these options (e.g. which weights, which binary); raising = unavailable;
                                     # info["chroma"] (e.g. "420") names the chroma format it codes
    def prepare(quality, **options)  # optional, untimed before each encode (e.g. load a model)

Optional hooks for codecs that do not encode here (e.g. published bitstreams, ``codecs/published.py``)::

    def encode(rgb, quality, image_name, **options)  # an encode that names a parameter ``image_name``
                                     # receives the image's name in the dataset (e.g. to pick its file)
    def untimed(**options) -> ("encode", "decode")  # stages whose wall time means nothing for these
                                     # options: stored as not measured (NaN, shown "not measured"), never 0
    def check_decoded(data, rec, **options)  # untimed, after each decode; raising = a decode failure
    def check_images(images, **options)  # untimed, once per run before any job: {name: read-only uint8
                                     # H x W x 3} of the run's originals; raising AdapterError = refused

Options are validated once, when a codec is selected, against their declaration (type, choices,
validator) and passed to ``encode``/``decode`` converted to their declared type; the declaration
is checked against the signatures when the adapter loads. An option declared with ``key=False``
(e.g. a binary's path, resolved by ``setup``, which returns it under ``"options"``) is passed to
the adapter but is not part of the cache key or the label: ``setup`` puts the identity of what it
names (version, content hash) into the version instead. The cache key's version always includes a
hash of the adapter's own code (its module file plus ``CODE_FILES``), so editing an adapter
recomputes its results. An option named ``device`` receives the harness's ``--device`` (``auto``
becomes ``cuda`` when torch sees a GPU, else ``cpu``). A module may instead define ``ADAPTERS =
[obj, ...]`` (and, to be found without importing it, ``CODEC_NAMES = ("a", "b")``) to provide
several codecs. The harness does all timing, size and quality measurement; adapters only encode
and decode.

Adapters are discovered in the built-in codecs folder (``codecs/`` of the checkout, installed as
``bench/codecs_builtin/``), in extra folders (``--codecs-dir``) and in the ``bench.codecs``
entry-point group of installed packages. Codec names are read from the source (``NAME``,
``CODEC_NAMES``) without importing it, so only the selected codecs' modules (and their libraries)
are imported. A module that fails to import (e.g. its library is missing, or it exits) is listed
as unavailable with the reason.
"""

from __future__ import annotations

from .contract import (
    FAMILIES,
    IMAGE_NAME,
    MAX_QUALITIES,
    QUALITY_KEY,
    REQUIRED,
    STAGES,
    Adapter,
    CodecConfig,
    SetupError,
    Unavailable,
    adapter_from_object,
    check_signature,
    in_run_directory,
    native_quality,
    run_directory,
    short_reason,
    stage_directory,
    takes_image_name,
    with_code,
)
from .discovery import (
    BUILTIN_CODECS_DIR,
    ENTRY_POINT_GROUP,
    INSTALLED_CODECS_DIR,
    PACKAGE_DIR,
    Catalog,
    Module,
    code_identity,
    codec_files,
    declared_names,
    discover,
    import_file,
    load_origin,
    scan,
)
from .options import (
    AdapterError,
    Option,
    option_specs,
)
from .selection import (
    auto_device,
    check_qualities,
    configure,
    merge_duplicates,
    parse_codec_spec,
    parse_qualities,
    select,
    validate_options,
)

__all__ = [
    "BUILTIN_CODECS_DIR",
    "ENTRY_POINT_GROUP",
    "FAMILIES",
    "IMAGE_NAME",
    "INSTALLED_CODECS_DIR",
    "MAX_QUALITIES",
    "PACKAGE_DIR",
    "QUALITY_KEY",
    "REQUIRED",
    "STAGES",
    "Adapter",
    "AdapterError",
    "Catalog",
    "CodecConfig",
    "Module",
    "Option",
    "SetupError",
    "Unavailable",
    "adapter_from_object",
    "auto_device",
    "check_qualities",
    "check_signature",
    "code_identity",
    "codec_files",
    "configure",
    "declared_names",
    "discover",
    "import_file",
    "in_run_directory",
    "load_origin",
    "merge_duplicates",
    "native_quality",
    "option_specs",
    "parse_codec_spec",
    "parse_qualities",
    "run_directory",
    "scan",
    "select",
    "short_reason",
    "stage_directory",
    "takes_image_name",
    "validate_options",
    "with_code",
]
