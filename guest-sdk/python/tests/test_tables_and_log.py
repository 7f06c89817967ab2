"""Fake lookup tables behave like the host's; log lines go to standard error natively."""

from collections.abc import Iterator

import pytest

from sluice_sdk import Error, log, tables, testing


@pytest.fixture(autouse=True)
def no_tables() -> Iterator[None]:
    yield
    testing.clear_tables()


def test_fake_tables_behave_like_the_hosts() -> None:
    testing.set_table("customers", b"1", b'{"name":"ada"}')
    assert tables.lookup("customers", b"1") == b'{"name":"ada"}'
    assert tables.lookup_json("customers", b"1") == {"name": "ada"}
    assert tables.lookup("customers", b"2") is None
    assert tables.lookup_json("customers", b"2") is None
    testing.set_table("customers", b"1", None)
    assert tables.lookup("customers", b"1") is None
    with pytest.raises(Error, match="^this pipeline declares no table named `orders`$"):
        tables.lookup("orders", b"1")
    testing.clear_tables()
    with pytest.raises(Error):
        tables.lookup("customers", b"1")


def test_a_value_that_is_not_json_names_the_table_and_key() -> None:
    testing.set_table("t", b"k", b"{")
    with pytest.raises(Error, match="^table `t`: the value of key `k` is not valid JSON: "):
        tables.lookup_json("t", b"k")


def test_log_lines_go_to_standard_error(capsys: pytest.CaptureFixture[str]) -> None:
    log.info("started")
    log.warn("odd")
    assert capsys.readouterr().err == "[Info] started\n[Warn] odd\n"
