"""User CSVs: Binance's kline layout (with or without header) or OHLCV; anything else is refused."""

from __future__ import annotations

import functools
import gzip
import itertools
import warnings
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market.csv_import import CsvImportError, _first_row, read_candle_csv
from market.csv_ranges import MIN_RANGE_BYTES, line_ranges, read_rows
from market.sample import load_sample

SAMPLE_GZ = Path(__file__).parents[1] / "market" / "data" / "BTCUSDT-1m-2025-10-29_3d.csv.gz"


def _sample_text() -> str:
    return gzip.decompress(SAMPLE_GZ.read_bytes()).decode()


def test_binance_layout_with_header(tmp_path: Path) -> None:
    path = tmp_path / "k.csv"
    path.write_text(_sample_text())
    frame, absent = read_candle_csv(path, "1m")
    assert absent == []
    pd.testing.assert_frame_equal(frame, load_sample("BTCUSDT"))


def test_binance_layout_without_header_and_microsecond_times(tmp_path: Path) -> None:
    """Binance's public dumps have no header, and newer spot dumps use microseconds."""
    lines = _sample_text().splitlines()[1:11]
    micro = []
    for line in lines:
        cells = line.split(",")
        cells[0], cells[6] = cells[0] + "000", cells[6] + "999"
        micro.append(",".join(cells))
    path = tmp_path / "BTCUSDT-1m-2025-10-29.csv"
    path.write_text("\n".join(micro) + "\n")
    frame, _ = read_candle_csv(path, "1m")
    assert frame.open_time.tolist() == load_sample("BTCUSDT").open_time[:10].tolist()


def test_ohlcv_with_iso_timestamps(tmp_path: Path) -> None:
    path = tmp_path / "ohlcv.csv"
    path.write_text(
        "timestamp,open,high,low,close,volume\n"
        "2025-10-29T04:22:00Z,112731.29,112749.73,112730.4,112749.72,4.75297\n"
        "2025-10-29T04:23:00Z,112749.71,112749.72,112686.38,112700.35,8.63715\n"
    )
    frame, absent = read_candle_csv(path, "1m")
    assert frame.open_time.tolist() == [1761711720000, 1761711780000]
    assert frame.close_time.tolist() == [1761711779999, 1761711839999]
    assert set(absent) == {"quote_volume", "trades", "taker_buy_volume", "taker_buy_quote_volume"}


def test_wrong_columns_name_what_was_expected(tmp_path: Path) -> None:
    path = tmp_path / "prices.csv"
    path.write_text("when,price\n2025-01-01,1\n")
    with pytest.raises(CsvImportError) as err:
        read_candle_csv(path, "1m")
    message = str(err.value)
    assert "missing columns ['timestamp', 'open', 'high', 'low', 'close', 'volume']" in message
    assert "open_time,open,high,low,close,volume" in message


def test_interval_mismatch_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "k.csv"
    rows = _sample_text().splitlines()
    path.write_text("\n".join([rows[0], *rows[1:200:5]]) + "\n")
    with pytest.raises(CsvImportError, match="bars are 5m apart but --interval is 1m"):
        read_candle_csv(path, "1m")


def test_unparseable_timestamp_names_the_value(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("timestamp,open,high,low,close,volume\nyesterday,1,1,1,1,1\n")
    with pytest.raises(CsvImportError, match="cannot parse timestamp 'yesterday'"):
        read_candle_csv(path, "1m")


@functools.cache
def _big_kline_lines() -> tuple[str, ...]:
    """The sample tiled forward in time past the size read in ranges (made once: ~110k rows)."""
    header, *rows = _sample_text().splitlines()
    span = 60_000 * len(rows)
    lines = [header]
    for copy in range(-(-MIN_RANGE_BYTES // len(_sample_text())) + 1):
        for row in rows:
            cells = row.split(",")
            cells[0], cells[6] = str(int(cells[0]) + copy * span), str(int(cells[6]) + copy * span)
            lines.append(",".join(cells))
    return tuple(lines)


def _big_kline_text(spoil: dict[int, str]) -> str:
    """`_big_kline_lines` as a file's text, with rows replaced."""
    lines = list(_big_kline_lines())
    for line, text in spoil.items():
        lines[line - 1] = text
    return "\n".join(lines) + "\n"


def _read_both(tmp_path: Path, text: str) -> tuple[Path, Path]:
    """The same text as a plain file (read in byte ranges, a thread each) and gzipped (which
    pandas reads whole, in one reader)."""
    plain, packed = tmp_path / "big.csv", tmp_path / "big.csv.gz"
    plain.write_text(text)
    packed.write_bytes(gzip.compress(text.encode(), compresslevel=1))
    assert plain.stat().st_size > MIN_RANGE_BYTES and len(line_ranges(plain, 2)) == 2
    return plain, packed


def test_a_large_file_read_in_ranges_equals_one_reader_bad_rows_and_all(tmp_path: Path) -> None:
    """Text in a number column late in the file makes the same NaN in the same row."""
    lines = list(_big_kline_lines())
    last = len(lines)
    cells = lines[last - 10].split(",")
    cells[4] = "n/a"  # close
    plain, packed = _read_both(tmp_path, _big_kline_text({last - 9: ",".join(cells)}))
    frame, absent = read_candle_csv(plain, "1m")
    pd.testing.assert_frame_equal(frame, read_candle_csv(packed, "1m")[0], check_exact=True)
    assert absent == [] and len(frame) == last - 1
    assert frame["close"].isna().sum() == 1 and pd.isna(frame["close"].iloc[last - 11])


def test_a_bad_line_late_in_a_large_file_is_named_by_its_own_line_number(tmp_path: Path) -> None:
    lines = list(_big_kline_lines())
    wide = lines[-5] + ",1"
    plain, packed = _read_both(tmp_path, _big_kline_text({len(lines) - 4: wide}))
    with pytest.raises(CsvImportError) as ranged:
        read_candle_csv(plain, "1m")
    with pytest.raises(CsvImportError) as whole:
        read_candle_csv(packed, "1m")
    assert f"line {len(lines) - 4}" in str(ranged.value)
    assert str(ranged.value).replace("big.csv", "big.csv.gz") == str(whole.value)


def _spoiled(kind: str) -> dict[int, str]:
    """Rows to replace in `_big_kline_text` so that its ranges disagree: a float in the
    integer trade count or text in the close late in the file, or first rows three times as
    long as the rest (the join allows for 25% more rows than the first range predicts)."""
    lines = list(_big_kline_lines())
    if kind == "padded first rows":  # leading zeros: the same open price
        return {n: lines[n - 1].replace(",", ",0" + "0" * 200, 1) for n in range(2, 20_000)}
    cells = lines[-10].split(",")
    if kind == "float count":
        cells[8] = "1.5"
    else:
        cells[4] = "x"
    return {len(lines) - 9: ",".join(cells)}


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["float count", "text close", "padded first rows"])
def test_ranges_join_as_one_reader_when_types_change_or_rows_shrink(
    tmp_path: Path, kind: str
) -> None:
    """Numbers are joined exactly as one reader reads them; text in a number column (where
    pandas' own chunks differ in which cells stay numbers) makes the same bars."""
    plain, packed = _read_both(tmp_path, _big_kline_text(_spoiled(kind)))
    if kind != "text close":
        options = {"names": range(12), "index_col": False, "skip_blank_lines": True}
        pd.testing.assert_frame_equal(
            read_rows(plain, True, **options), read_rows(packed, True, **options), check_exact=True
        )
    with warnings.catch_warnings():  # the text cell is a bad row, not pandas' typing advice
        warnings.simplefilter("error", pd.errors.DtypeWarning)
        frame, other = read_candle_csv(plain, "1m")[0], read_candle_csv(packed, "1m")[0]
    pd.testing.assert_frame_equal(frame, other, check_exact=True)


@pytest.mark.slow
@settings(max_examples=60, deadline=None)
@given(
    lines=st.lists(st.text(alphabet="0123456789.,-", max_size=30), max_size=40),
    crlf=st.booleans(),
    parts=st.integers(1, 8),
)
def test_byte_ranges_cover_the_file_and_cut_only_after_a_newline(
    tmp_path_factory: pytest.TempPathFactory, lines: list[str], crlf: bool, parts: int
) -> None:
    """Every byte is in exactly one range, in order, and no line is split between two."""
    path = tmp_path_factory.mktemp("ranges") / "rows.csv"
    data = ("\r\n" if crlf else "\n").join(lines).encode()
    path.write_bytes(data)
    spans = line_ranges(path, parts)
    assert spans[0][0] == 0 and spans[-1][1] == len(data) and len(spans) <= parts
    assert all(end == start for (_, end), (start, _) in itertools.pairwise(spans))
    assert all(data[start - 1 : start] == b"\n" for start, _ in spans[1:])


BAR_COLUMNS = ["open_time", "open", "high", "low", "close", "volume", "close_time"]


def _bars_both_ways(path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A backtest's read (the bars' columns only) and the full read, cut to the same columns."""
    bars, absent = read_candle_csv(path, "1m", bars_only=True)
    assert absent == [] and list(bars.columns) == BAR_COLUMNS
    return bars, read_candle_csv(path, "1m")[0][BAR_COLUMNS]


@pytest.mark.parametrize("size", ["small", "large"])
@pytest.mark.parametrize("header", [True, False])
def test_a_backtests_read_of_the_bars_columns_equals_the_full_read(
    tmp_path: Path, size: str, header: bool
) -> None:
    """Small files are read whole, large ones in byte ranges; with a header or Binance's
    headerless dumps. A text cell in a bar column is the same NaN either way."""
    text = _sample_text() if size == "small" else _big_kline_text({})
    lines = text.splitlines()
    cells = lines[-3].split(",")
    cells[2] = "n/a"  # high
    lines[-3] = ",".join(cells)
    path = tmp_path / "k.csv"
    path.write_text("\n".join(lines[0 if header else 1 :]) + "\n")
    bars, full = _bars_both_ways(path)
    pd.testing.assert_frame_equal(bars, full, check_exact=True)
    assert bars["high"].isna().sum() == 1


@pytest.mark.parametrize("size", ["small", "large"])
@pytest.mark.parametrize(
    "spoil", ["a comma too many among the prices", "one field more", "and a row one short"]
)
def test_a_row_too_wide_is_refused_by_a_backtests_read_too(
    tmp_path: Path, size: str, spoil: str
) -> None:
    """Converting only the bars' columns, pandas no longer counts a row's fields: a row
    with its prices shifted by a stray comma must still be refused, naming its line, even
    where a row one field short elsewhere makes the commas add up."""
    lines = _sample_text().splitlines() if size == "small" else list(_big_kline_lines())
    at = len(lines) - 4
    cells = lines[at - 1].split(",")
    if spoil == "one field more":
        cells.append("7")
    else:
        cells.insert(2, cells[2])  # high twice: low, close and volume each one field later
    lines[at - 1] = ",".join(cells)
    if spoil == "and a row one short":
        lines[at - 3] = lines[at - 3].rsplit(",", 1)[0]
    path = tmp_path / "k.csv"
    path.write_text("\n".join(lines) + "\n")
    errors = []
    for bars_only in (True, False):
        with pytest.raises(CsvImportError) as refused:
            read_candle_csv(path, "1m", bars_only=bars_only)
        errors.append(str(refused.value))
    assert f"line {at}" in errors[0] and errors[0] == errors[1]


@pytest.mark.parametrize("size", ["small", "large"])
@pytest.mark.parametrize(
    "spoil", ["a short row", "a quoted comma", "an empty last field", "a blank line"]
)
def test_rows_a_backtests_read_cannot_count_are_read_in_full(
    tmp_path: Path, size: str, spoil: str
) -> None:
    """Where the commas do not tell every row's width, every column is read and pandas
    judges: the bars are the full read's."""
    lines = _sample_text().splitlines() if size == "small" else list(_big_kline_lines())
    cells = lines[-6].split(",")
    if spoil == "a short row":
        cells.pop()
    elif spoil == "a quoted comma":
        cells[8] = '"1,234"'
    elif spoil == "an empty last field":
        cells[-1] = ""
    lines[-6] = "" if spoil == "a blank line" else ",".join(cells)
    path = tmp_path / "k.csv"
    path.write_text("\n".join(lines) + "\n")
    bars, full = _bars_both_ways(path)
    pd.testing.assert_frame_equal(bars, full, check_exact=True)
    assert len(bars) == len(lines) - 1 - (spoil == "a blank line")


@pytest.mark.parametrize(
    "head",
    [
        b"open_time,open,high,low,close,volume\n",
        b"\n  \n\t\nTimestamp, Open ,HIGH,low,close,volume\r\n",
        b"\xef\xbb\xbfdate,open,high,low,close,volume\n",
        b"NA,open,high,low,close,volume\n",
        b"1761711720000,,NA,null,N/A,1\n",
        b"1761711720000,112731.29,112749.73,112730.4,112749.72,4.75297,\n",
        b'"timestamp","open","high","low","close","volume"\n',
        b"timestamp;open;high\n",
    ],
)
def test_the_first_row_is_sniffed_as_pandas_reads_it(tmp_path: Path, head: bytes) -> None:
    """The header (or the first data row) is read without pandas where the line is plain:
    blank lines skipped, a byte order mark dropped, pandas' NA markers as NaN, quotes left to
    pandas. Whatever reads it, the columns are named alike."""
    path = tmp_path / "head.csv"
    path.write_bytes(head + b"1761711780000,1,2,0.5,1.5,3\n")
    pandas_reads = pd.read_csv(path, header=None, dtype=str, skip_blank_lines=True, nrows=1)
    expected = [str(v).strip().lower() for v in pandas_reads.iloc[0]]
    sniffed = _first_row(path)
    assert sniffed in (expected, None)
    assert (sniffed is None) == (b'"' in head)
