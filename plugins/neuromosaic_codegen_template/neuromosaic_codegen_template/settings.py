"""Settings of the ``template`` code generator (``codegen.<field>`` on the command line)."""

from __future__ import annotations

import attrs


@attrs.frozen
class TemplateSettings:
    """``shape_comments``: annotate each layer with its input and output shapes (default true)."""

    shape_comments: bool = attrs.field(default=True, validator=attrs.validators.instance_of(bool))
