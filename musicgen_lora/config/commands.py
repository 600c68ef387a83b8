"""The options of the commands besides training (generate, push), each defined once as a dataclass and parsed by
``HfArgumentParser``, so ``--help``, a saved JSON of the options and the Studio read the same fields."""

from __future__ import annotations

import dataclasses
import re
import typing
from typing import Any

from transformers import HfArgumentParser

from ..errors import DefaultsHelpFormatter, UserError, one_line


class CommandParser(HfArgumentParser):
    """The parser of a command's options, defined once as a dataclass (``--help``, JSON and the Studio read the same
    fields), as ``HfArgumentParser`` builds it, with this project's usage errors (one line naming the option, then
    where the options are listed) and two kinds of field it does not make:

    - ``metadata={"positional": True}``: a positional argument (shown as ``metadata["metavar"]``);
    - ``metadata={"repeat": True}`` on a ``list`` field: a flag given once per value (``--prompt a --prompt b``).
    """

    def __init__(self, dataclass_type: type, prog: str, description: str) -> None:
        super().__init__(
            dataclass_type,
            prog=prog,
            description=description,
            allow_abbrev=False,
            formatter_class=DefaultsHelpFormatter,
        )
        self.dataclass_type = dataclass_type

    def error(self, message: str) -> typing.NoReturn:
        # "argument --out_dir/--out-dir: ..." names the option as the user wrote it in the docs: its first spelling
        message = re.sub(r"(--\w+)(/--[\w-]+)+", r"\1", one_line(message))
        raise UserError(f"{message}; run {self.prog} --help for the options")

    # A reach into HfArgumentParser's private per-field hook (tested on transformers 5.23-5.25; it belongs with the
    # other reaches in the compat module): no public way makes a positional argument or a repeated flag.
    @staticmethod
    def _parse_dataclass_field(parser: Any, field: dataclasses.Field) -> None:
        metadata = dict(field.metadata)
        if metadata.pop("positional", False):
            parser.add_argument(field.name, **metadata)
            return
        if metadata.pop("repeat", False):
            (element,) = typing.get_args(field.type)
            flags = [f"--{field.name}"] + ([f"--{field.name.replace('_', '-')}"] if "_" in field.name else [])
            parser.add_argument(*flags, action="append", type=element, default=[], **metadata)
            return
        HfArgumentParser._parse_dataclass_field(parser, field)

    def parse(self, argv: list[str]) -> Any:
        """The command's options as its dataclass; unknown or malformed words are one-line UserErrors."""
        return self.dataclass_type(**vars(self.parse_args(argv)))
