"""The jinja2 environment for every mail mailsms writes (bounces, SMS turned into mail).

Default templates live in the top-level ``templates/`` folder, installed as the package
``mailsms.templates``; an operator's ``[templates] dir`` overrides single files by name.
HTML templates autoescape, and ``StrictUndefined`` turns a misspelt variable into an error
at render time instead of an empty string in someone's inbox.
"""

from __future__ import annotations

from functools import cache

import jinja2


@cache
def environment(override_dir: str | None = None) -> jinja2.Environment:
    loaders: list[jinja2.BaseLoader] = []
    if override_dir:
        loaders.append(jinja2.FileSystemLoader(override_dir))
    loaders.append(jinja2.PackageLoader("mailsms", "templates"))
    return jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=jinja2.select_autoescape(
            enabled_extensions=("html", "htm", "xml", "html.j2", "htm.j2"),
            default_for_string=False,
            default=False,
        ),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
