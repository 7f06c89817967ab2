"""A Sluice transform: renames fields of JSON records and adds constant ones.

Configuration (all optional):
- `rename`: comma-separated `old:new` pairs, e.g. `msg:message,ts:timestamp`
- `add`: comma-separated `field:value` pairs of string fields to add, e.g. `source:web`
"""

from sluice_sdk import Config, Error, Record, Transform, Writer


def pairs(config: Config, key: str) -> list[tuple[str, str]]:
    """Parses `a:b,c:d` into pairs, naming `key` in the error."""
    found = []
    for pair in (p.strip() for p in (config.get(key) or "").split(",")):
        if not pair:
            continue
        name, colon, value = pair.partition(":")
        if not colon or not name.strip():
            raise Error(f"{key}: expected `name:value` pairs, got `{pair}`")
        found.append((name.strip(), value.strip()))
    return found


class {{TYPE}}(Transform):
    """Renames and adds fields of JSON object records."""

    def __init__(self, config: Config) -> None:
        config.allow_only(["rename", "add"])
        self.rename = dict(reversed(pairs(config, "rename")))  # the first pair for a name wins
        self.add = pairs(config, "add")

    def process(self, record: Record, out: Writer) -> None:
        value = record.json()
        if not isinstance(value, dict):
            raise Error("expected a JSON object")
        # Rebuilt in order, so a renamed field keeps its place.
        renamed = {self.rename.get(name, name): field for name, field in value.items()}
        renamed.update(self.add)
        out.write_json(renamed)
