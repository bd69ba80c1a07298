"""One Iceberg snapshot that adds and removes data files AND position-delete files (pyiceberg 0.12 writes only data
manifests: its producers cannot commit delete files). Imported only when the Iceberg table is enabled.

The data side is pyiceberg's overwrite producer unchanged. The delete side: when the set of delete files changes,
the snapshot's delete manifests are rewritten as ONE delete manifest (kept files EXISTING, with their sequence
numbers; new files ADDED, so they get this snapshot's sequence number and apply to every older data file; dropped
files DELETED); when it does not change, the parent's delete manifests are kept as they are. tiering has one delete
file per object with restored jobs, so that manifest stays small.
"""

from __future__ import annotations

from collections import defaultdict

from pyiceberg.manifest import (
    DataFile,
    DataFileContent,
    ManifestContent,
    ManifestEntry,
    ManifestEntryStatus,
    ManifestFile,
    ManifestWriterV2,
)
from pyiceberg.table import Transaction
from pyiceberg.table.snapshots import Operation, SnapshotSummaryCollector, Summary, update_snapshot_summaries
from pyiceberg.table.update.snapshot import _OverwriteFiles
from pyiceberg.typedef import EMPTY_DICT


class _DeleteManifestWriter(ManifestWriterV2):
    """A v2 manifest of delete files (content 1): pyiceberg's V2 writer with the content it hard-codes changed."""

    def content(self) -> ManifestContent:
        return ManifestContent.DELETES

    @property
    def _meta(self) -> dict[str, str]:
        return {**super()._meta, "content": "deletes"}


class TableChange(_OverwriteFiles):
    """Data files added/removed (pyiceberg's overwrite) plus position-delete files added/removed, in one snapshot."""

    def __init__(
        self,
        transaction: Transaction,
        *,
        add_data: list[DataFile],
        remove_data: list[DataFile],
        add_deletes: list[DataFile],
        remove_deletes: list[DataFile],
        snapshot_properties: dict[str, str] = EMPTY_DICT,
    ) -> None:
        has_parent = transaction.table_metadata.current_snapshot() is not None
        only_deletes = not add_data and not remove_data
        operation = Operation.DELETE if only_deletes and has_parent else Operation.OVERWRITE
        if not has_parent:
            operation = Operation.APPEND
        super().__init__(
            operation=operation, transaction=transaction, io=transaction._table.io,
            snapshot_properties=snapshot_properties,
        )  # fmt: skip
        for data_file in add_data:
            self.append_data_file(data_file)
        for data_file in remove_data:
            self.delete_data_file(data_file)
        self._add_deletes = list(add_deletes)
        self._remove_deletes = {f.file_path for f in remove_deletes}
        self._removed_delete_files: list[DataFile] = []

    def _manifests(self) -> list[ManifestFile]:
        self._build_delete_files_partition_predicate()
        deleted_entries = self._deleted_entries()  # data files only: pyiceberg's overwrite
        manifests: list[ManifestFile] = []
        if self._added_data_files:
            with self.new_manifest_writer(spec=self._transaction.table_metadata.spec()) as writer:
                for data_file in self._added_data_files:
                    writer.add(ManifestEntry.from_args(status=ManifestEntryStatus.ADDED, snapshot_id=self._snapshot_id,
                                                       data_file=data_file))  # fmt: skip
            manifests.append(writer.to_manifest_file())
        by_spec: dict[int, list[ManifestEntry]] = defaultdict(list)
        for entry in deleted_entries:
            by_spec[entry.data_file.spec_id].append(entry)
        for spec_id, entries in by_spec.items():
            with self.new_manifest_writer(self.spec(spec_id)) as writer:
                for entry in entries:
                    writer.add_entry(entry)
            manifests.append(writer.to_manifest_file())
        manifests += [m for m in self._existing_manifests() if m.content == ManifestContent.DATA]
        return manifests + self._delete_manifests()

    def _parent_delete_manifests(self) -> list[ManifestFile]:
        if self._parent_snapshot_id is None:
            return []
        parent = self._transaction.table_metadata.snapshot_by_id(self._parent_snapshot_id)
        if parent is None:
            return []
        return [
            m for m in parent.manifests(io=self._io)
            if m.content == ManifestContent.DELETES and (m.has_added_files() or m.has_existing_files())
        ]  # fmt: skip

    def _delete_manifests(self) -> list[ManifestFile]:
        parent = self._parent_delete_manifests()
        if not self._add_deletes and not self._remove_deletes:
            return parent
        kept: list[ManifestEntry] = []
        dropped: list[ManifestEntry] = []
        for manifest in parent:
            for entry in manifest.fetch_manifest_entry(io=self._io, discard_deleted=True):
                (dropped if entry.data_file.file_path in self._remove_deletes else kept).append(entry)
        self._removed_delete_files = [e.data_file for e in dropped]
        by_spec: dict[int, list[tuple[str, ManifestEntry | DataFile]]] = defaultdict(list)
        for entry in kept:
            by_spec[entry.data_file.spec_id].append(("existing", entry))
        for entry in dropped:
            by_spec[entry.data_file.spec_id].append(("deleted", entry))
        for data_file in self._add_deletes:
            by_spec[data_file.spec_id].append(("added", data_file))
        manifests = []
        for spec_id, items in by_spec.items():
            writer = _DeleteManifestWriter(
                self.spec(spec_id), self.schema(), self.new_manifest_output(), self._snapshot_id, self._compression
            )
            with writer:
                for kind, item in items:
                    if kind == "existing":
                        assert isinstance(item, ManifestEntry)
                        writer.existing(item)
                    elif kind == "deleted":
                        assert isinstance(item, ManifestEntry)
                        writer.delete(item)
                    else:
                        assert isinstance(item, DataFile)
                        added = ManifestEntry.from_args(
                            status=ManifestEntryStatus.ADDED, snapshot_id=self._snapshot_id, data_file=item
                        )
                        writer.add_entry(added)
            manifests.append(writer.to_manifest_file())
        return manifests

    def _summary(self, snapshot_properties: dict[str, str] = EMPTY_DICT) -> Summary:
        """pyiceberg's summary, counting the delete files added and removed as well."""
        metadata = self._transaction.table_metadata
        schema, specs = metadata.schema(), metadata.specs()
        collector = SnapshotSummaryCollector()
        for data_file in [*self._added_data_files, *self._add_deletes]:
            collector.add_file(data_file=data_file, partition_spec=specs[data_file.spec_id], schema=schema)
        for data_file in [*self._deleted_data_files, *self._removed_delete_files]:
            collector.remove_file(data_file=data_file, partition_spec=specs[data_file.spec_id], schema=schema)
        previous = metadata.snapshot_by_id(self._parent_snapshot_id) if self._parent_snapshot_id is not None else None
        return update_snapshot_summaries(
            summary=Summary(operation=self._operation, **collector.build(), **snapshot_properties),
            previous_summary=previous.summary if previous is not None else None,
        )


def position_delete_file(path: str, data_file: DataFile, positions: list[int], size: int) -> DataFile:
    """The manifest entry of a position-delete file for ONE data file: the data file's partition and spec, and
    lower = upper bound of file_path (readers then apply it to that file only, by path)."""
    from pyiceberg.conversions import to_bytes
    from pyiceberg.types import LongType, StringType

    from tiering.parquet import ICEBERG_DELETE_FILE_PATH_ID, ICEBERG_DELETE_POS_ID

    path_bound = to_bytes(StringType(), data_file.file_path)
    low, high = to_bytes(LongType(), min(positions)), to_bytes(LongType(), max(positions))
    entry = DataFile.from_args(
        content=DataFileContent.POSITION_DELETES,
        file_path=path,
        file_format=data_file.file_format,
        partition=data_file.partition,
        record_count=len(positions),
        file_size_in_bytes=size,
        lower_bounds={ICEBERG_DELETE_FILE_PATH_ID: path_bound, ICEBERG_DELETE_POS_ID: low},
        upper_bounds={ICEBERG_DELETE_FILE_PATH_ID: path_bound, ICEBERG_DELETE_POS_ID: high},
    )
    entry.spec_id = data_file.spec_id  # a property, not a manifest field: from_args leaves it unset
    return entry
