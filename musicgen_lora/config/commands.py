"""The options of the commands besides training (generate, push), each defined once as a dataclass and parsed by
``HfArgumentParser`` (:class:`~musicgen_lora.config.parsing.OptionsParser`), so ``--help``, a saved JSON of the
options and the Studio read the same fields."""

from __future__ import annotations

from typing import Any

from .parsing import OptionsParser


class CommandParser(OptionsParser):
    """The parser of a command whose options are one dataclass; :meth:`parse` returns that dataclass."""

    def __init__(self, dataclass_type: type, prog: str, description: str) -> None:
        super().__init__(dataclass_type, prog, description=description)
        self.dataclass_type = dataclass_type

    def parse(self, argv: list[str]) -> Any:
        """The command's options as its dataclass; unknown or malformed words are one-line UserErrors."""
        (options,) = super().parse(argv)
        return options
