"""WeatherBench at 5.625 degrees (Rasp et al., 2020): global fields on a 32x64 latitude/longitude grid.

Reads the NetCDF files as distributed, one per variable and year::

    root/2m_temperature/2m_temperature_2010_5.625deg.nc
    root/2m_temperature_2010_5.625deg.nc            (also accepted: the files directly in root)

with xarray, lazily: only the frames of the requested window are read. Each variable is one
channel; ``variable`` takes short names (t2m, tcc, r, u10, v10, tp, z, t, ...). Normalisation is
``(x - mean) / std`` per channel with statistics of the training years only; ``mean``/``std``
undo it so metrics are in the variable's units (kelvin for t2m).

Windows: ``in_frames + out_frames`` frames ``step`` hours apart, one window starting at every
``stride``-th hour, never across a gap in time; train, val and test years are disjoint.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..optional import require
from ..registry import DATASETS
from .base import VideoDataset, file_status

VARIABLES = {
    "t2m": "2m_temperature",
    "tcc": "total_cloud_cover",
    "tp": "total_precipitation",
    "u10": "10m_u_component_of_wind",
    "v10": "10m_v_component_of_wind",
    "tisr": "toa_incident_solar_radiation",
    "r": "relative_humidity",
    "z": "geopotential",
    "t": "temperature",
    "q": "specific_humidity",
    "u": "u_component_of_wind",
    "v": "v_component_of_wind",
}
HOW_TO_GET = ("download the 5.625deg files per variable from WeatherBench "
              "(https://github.com/pangeo-data/WeatherBench, e.g. 2m_temperature_5.625deg.zip) and unzip them in data.root")
_STATS_CACHE: dict = {}


def _years(value, key: str) -> list[int]:
    if isinstance(value, int):
        return [value]
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return list(range(value[0], value[1] + 1))
    raise DataError(f"data.{key} must be a year or [first, last] years, got {value!r}")


class _Variable:
    """One variable's files for a list of years, opened lazily (once per process: safe with DataLoader workers)."""

    def __init__(self, root: Path, short: str, level: int | None, years: list[int]):
        folder = VARIABLES.get(short, short)
        self.short, self.level, self.files = short, level, []
        for year in years:
            candidates = [root / folder / f"{folder}_{year}_5.625deg.nc", root / f"{folder}_{year}_5.625deg.nc"]
            found = next((p for p in candidates if p.is_file()), None)
            if found is None:
                raise DataError(f"data.root: {candidates[0]} not found (also looked for {candidates[1]}); {HOW_TO_GET}")
            self.files.append(found)
        self._open: dict[int, object] = {}
        self._pid = None

    def array(self, i: int):
        """The DataArray (time, lat, lon) of file i, not loaded."""
        if self._pid != os.getpid():
            self._open, self._pid = {}, os.getpid()
        if i not in self._open:
            self._open[i] = self._load(self.files[i])
        return self._open[i]

    def _load(self, path: Path):
        xr = require("xarray", "weatherbench", "reading WeatherBench's NetCDF files")
        require("netCDF4", "weatherbench", "reading WeatherBench's NetCDF files")
        try:
            ds = xr.open_dataset(path, engine="netcdf4", cache=False)
        except Exception as exc:
            raise DataError(f"{path}: cannot open this NetCDF file ({type(exc).__name__}: {exc}); it is corrupt or "
                            f"truncated, download it again") from exc
        names = [n for n in ds.data_vars if n not in ("lat_bnds", "lon_bnds", "time_bnds")]
        if not names:
            raise DataError(f"{path}: no data variable in this file")
        da = ds[self.short] if self.short in ds.data_vars else ds[names[0]]
        if "level" in da.dims:
            if self.level is None:
                raise DataError(f"{path}: {da.name} has pressure levels {da['level'].values.tolist()}; set data.level")
            if self.level not in da["level"].values:
                raise DataError(f"{path}: data.level = {self.level} is not one of {da['level'].values.tolist()}")
            da = da.sel(level=self.level)
        if da.dims != ("time", "lat", "lon"):
            raise DataError(f"{path}: expected dimensions (time, lat, lon), got {da.dims}")
        return da

    def hours(self, i: int) -> np.ndarray:
        times = self.array(i)["time"].values.astype("datetime64[h]").astype(np.int64)
        return times

    def read(self, i: int, index: np.ndarray) -> np.ndarray:
        try:
            return np.asarray(self.array(i).isel(time=index).values, dtype=np.float32)
        except Exception as exc:
            raise DataError(f"{self.files[i]}: reading time steps {index.tolist()} failed ({type(exc).__name__}: "
                            f"{exc}); the file is corrupt or truncated") from exc


@DATASETS.register("weatherbench")
class WeatherBench(VideoDataset):
    """WeatherBench 5.625 deg, one channel per variable, 32x64 (OpenSTL: t2m, 12 -> 12, hourly).

    Metrics follow OpenSTL's WeatherBench conventions: MSE, MAE and RMSE per pixel (``spatial_norm``),
    and per variable (``mse_<name>``, ...) when there are several.

    Args:
        split, in_frames, out_frames: as every dataset.
        root: folder with the per-variable folders (or the .nc files).
        variable: short name or list of short names (channels), default "t2m".
        level: pressure level (hPa) for variables on levels (r, z, t, ...).
        train_years, val_years, test_years: a year or [first, last] (OpenSTL: 2010-2015, 2016, 2017-2018).
        step: hours between consecutive frames.
        stride: hours between the starts of consecutive windows.
    """

    def __init__(
        self,
        split: str,
        in_frames: int,
        out_frames: int,
        root: str = "data/weatherbench",
        variable: str | list = "t2m",
        level: int | None = None,
        train_years: list = (2010, 2015),
        val_years: list = (2016, 2016),
        test_years: list = (2017, 2018),
        step: int = 1,
        stride: int = 1,
    ):
        super().__init__(split, in_frames, out_frames)
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"data.root: the WeatherBench folder {self.root.resolve()} does not exist; {HOW_TO_GET}")
        for key, value in (("step", step), ("stride", stride)):
            if not isinstance(value, int) or value < 1:
                raise DataError(f"data.{key} must be an int >= 1 (hours), got {value!r}")
        names = [variable] if isinstance(variable, str) else list(variable)
        unknown = [v for v in names if not isinstance(v, str)]
        if not names or unknown:
            raise DataError(f"data.variable must be a short name or a list of them ({', '.join(VARIABLES)}), got {variable!r}")
        years = {"train": _years(train_years, "train_years"), "val": _years(val_years, "val_years"),
                 "test": _years(test_years, "test_years")}
        shared = (set(years["train"]) & set(years["val"])) | (set(years["train"]) & set(years["test"])) | (
            set(years["val"]) & set(years["test"]))
        if shared:
            raise DataError(f"data.train_years / val_years / test_years overlap in {sorted(shared)}")
        self.step, self.stride, self.level = step, stride, level
        self.channel_names = self.variable_names(variable)
        self.variables = [_Variable(self.root, v, level, years[split]) for v in names]
        train_vars = [_Variable(self.root, v, level, years["train"]) for v in names]
        stats = [self._train_stats(v) for v in train_vars]
        self.mean = [m for m, _ in stats]
        self.std = [s for _, s in stats]
        self._build_index()

    spatial_norm = True

    @staticmethod
    def variable_names(variable) -> list[str] | None:
        """The per-variable metric names of ``variable``: None for one variable (OpenSTL reports those whole)."""
        return None if isinstance(variable, str) or len(variable) < 2 else [str(v) for v in variable]

    @classmethod
    def frame_shape(cls, variable="t2m", **_) -> tuple[int, int, int]:
        return (1 if isinstance(variable, str) else len(variable), 32, 64)

    @classmethod
    def describe_files(cls, root: Path, variable="t2m", train_years=(2010, 2015), val_years=(2016, 2016),
                       test_years=(2017, 2018), **_) -> list[str]:
        lines = []
        for short in [variable] if isinstance(variable, str) else variable:
            folder = VARIABLES.get(short, short)
            for split, years in (("train", train_years), ("val", val_years), ("test", test_years)):
                for year in _years(years, f"{split}_years"):
                    name = f"{folder}_{year}_5.625deg.nc"
                    nested, flat = root / folder / name, root / name
                    path = nested if nested.is_file() or not flat.is_file() else flat
                    lines.append(file_status(path) + f"  [{split}]")
        return lines

    def _train_stats(self, var: _Variable) -> tuple[float, float]:
        key = (var.short, var.level, tuple((str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in var.files))
        if key not in _STATS_CACHE:
            total, total_sq, count = 0.0, 0.0, 0
            for i in range(len(var.files)):
                values = var.read(i, np.arange(var.array(i).sizes["time"])).astype(np.float64)
                total, total_sq, count = total + values.sum(), total_sq + (values**2).sum(), count + values.size
            mean = total / count
            _STATS_CACHE[key] = (float(mean), float(np.sqrt(max(total_sq / count - mean**2, 1e-12))))
        return _STATS_CACHE[key]

    def _build_index(self) -> None:
        first = self.variables[0]
        hours, where = [], []
        for i in range(len(first.files)):
            h = first.hours(i)
            shape = first.array(i).shape[1:]
            if shape != (32, 64):
                raise DataError(f"{first.files[i]}: grid {shape}, expected 32x64 (the 5.625-degree files)")
            for other in self.variables[1:]:
                if not np.array_equal(other.hours(i), h):
                    raise DataError(f"{other.files[i]}: its time axis differs from {first.files[i]}")
            hours.append(h)
            where.append(np.stack([np.full(len(h), i), np.arange(len(h))], axis=1))
        self._hours = np.concatenate(hours)
        self._where = np.concatenate(where)
        offsets = np.arange(self.in_frames + self.out_frames) * self.step
        lookup = {h: k for k, h in enumerate(self._hours.tolist())}
        starts = []
        for k in range(0, len(self._hours), 1):
            h0 = self._hours[k]
            if (h0 - self._hours[0]) % self.stride:
                continue
            if all(int(h0 + o) in lookup for o in offsets):
                starts.append(k)
        self._lookup = lookup
        self._starts = np.asarray(starts, dtype=np.int64)
        if len(self._starts) == 0:
            raise DataError(f"data: the {self.split} years have no window of {self.in_frames + self.out_frames} frames "
                            f"{self.step} h apart; check the years, data.step and the frame counts")

    def __len__(self) -> int:
        return len(self._starts)

    def __getitem__(self, index: int):
        h0 = self._hours[self._starts[index]]
        rows = self._where[[self._lookup[h0 + j * self.step] for j in range(self.in_frames + self.out_frames)]]
        channels = []
        for var, mean, std in zip(self.variables, self.mean, self.std):
            frames = np.empty((len(rows), 32, 64), dtype=np.float32)
            for file_index in np.unique(rows[:, 0]):
                sel = rows[:, 0] == file_index
                frames[sel] = var.read(int(file_index), rows[sel, 1])
            channels.append((frames - mean) / std)
        return self.split_pair(np.stack(channels, axis=1), self.in_frames, self.out_frames)
