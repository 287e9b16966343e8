#if canImport(Glibc)
import Glibc
#endif
import SystemSupport

/// Copies of a stopped cluster kept under one directory (`.amp/snapshots`): `NAME/data` (the
/// data directory, reflinked where the file system shares extents, else a sparse copy) and
/// `NAME/manifest` (`key=value` lines, written last: a snapshot without one is incomplete and
/// not listed). The caller stops PostgreSQL before ``create(_:from:gitCommit:)`` and
/// ``restore(_:into:)``, so every snapshot is consistent by construction: the fast shutdown's
/// checkpoint leaves nothing to replay.
public struct ClusterSnapshots: Sendable {
    public let directory: String

    public init(directory: String) { self.directory = directory }

    /// One snapshot, as its manifest describes it.
    public struct Snapshot: Sendable, Equatable {
        public var name: String
        /// UTC, `2026-11-26T04:30:00Z`.
        public var created: String
        /// The cluster's `PG_VERSION`.
        public var postgresVersion: String
        public var sizeBytes: UInt64
        public var gitCommit: String?
    }

    public enum Failure: Error, Sendable, Equatable {
        case exists(String)
        case missing(String)
        case incompatible(name: String, snapshot: String, cluster: String)
        case io(String)
    }

    /// Every complete snapshot, oldest first.
    public func list() -> [Snapshot] {
        listDirectory(directory).compactMap(read).sorted { ($0.created, $0.name) < ($1.created, $1.name) }
    }

    /// Whether anything exists under snapshot name `name` (a snapshot, or a directory whose
    /// manifest cannot be read: the name is taken either way).
    public func exists(_ name: String) -> Bool { FileSystem.exists(directory + "/" + name) }

    func read(_ name: String) -> Snapshot? {
        guard let text = FileContents.text(directory + "/" + name + "/manifest", limit: 1 << 16) else { return nil }
        let fields = keyValueLines(text)
        guard let created = fields["created"], let version = fields["postgres_version"] else { return nil }
        return Snapshot(name: name, created: created, postgresVersion: version, sizeBytes: UInt64(fields["size_bytes"] ?? "") ?? 0,
                        gitCommit: fields["git_commit"].flatMap { $0.isEmpty ? nil : $0 })
    }

    /// Copies the stopped cluster at `dataDirectory` into snapshot `name`.
    public func create(_ name: String, from dataDirectory: String, gitCommit: String?) throws(Failure) -> Snapshot {
        let target = directory + "/" + name
        if FileSystem.exists(target) { throw .exists(name) }
        guard let version = FileContents.text(dataDirectory + "/PG_VERSION")?.trimmingWhitespace else {
            throw .io("\(dataDirectory) holds no cluster")
        }
        let staging = directory + "/.tmp-" + name + "-\(getpid())"
        do {
            try makeDirectories(directory)
            try removeTree(staging)
            try makeDirectories(staging)
        } catch {
            throw .io("\(error)")
        }
        var reflinked = false
        do {
            try ClusterTemplateCache.copyTree(dataDirectory, to: staging + "/data", reflinked: &reflinked)
        } catch {
            try? removeTree(staging)
            throw .io("cannot copy the cluster: \(error.message)")
        }
        unlink(staging + "/data/postmaster.pid")
        let snapshot = Snapshot(name: name, created: Self.now(), postgresVersion: version, sizeBytes: diskUsage(staging + "/data"), gitCommit: gitCommit)
        let manifest = "created=\(snapshot.created)\npostgres_version=\(version)\nsize_bytes=\(snapshot.sizeBytes)\ngit_commit=\(gitCommit ?? "")\nreflinked=\(reflinked)\n"
        do {
            try writeFileAtomically(staging + "/manifest", Array(manifest.utf8), mode: 0o600)
        } catch {
            try? removeTree(staging)
            throw .io("\(error)")
        }
        if rename(staging, target) != 0 {
            let reason = String(cString: strerror(errno))
            try? removeTree(staging)
            throw .io("cannot move the snapshot into \(target): \(reason)")
        }
        return snapshot
    }

    /// Puts a copy of snapshot `name` in place of the stopped cluster at `dataDirectory`; the
    /// current cluster is moved aside and returned, for ``finishRestore(_:)`` once the restored
    /// one is up or ``undoRestore(_:into:)`` when it is not.
    public func restore(_ name: String, into dataDirectory: String) throws(Failure) -> String {
        guard let snapshot = read(name) else { throw .missing(name) }
        let current = FileContents.text(dataDirectory + "/PG_VERSION")?.trimmingWhitespace ?? snapshot.postgresVersion
        guard current == snapshot.postgresVersion else {
            throw .incompatible(name: name, snapshot: snapshot.postgresVersion, cluster: current)
        }
        let parent = FileSystem.parentDirectory(dataDirectory)
        let staging = parent + "/.restore-\(getpid())"
        try? removeTree(staging)
        var reflinked = false
        do {
            try ClusterTemplateCache.copyTree(directory + "/" + name + "/data", to: staging, reflinked: &reflinked)
        } catch {
            try? removeTree(staging)
            throw .io("cannot copy the snapshot: \(error.message); the cluster is as it was")
        }
        let kept = parent + "/.before-restore-\(getpid())"
        try? removeTree(kept)
        guard rename(dataDirectory, kept) == 0 else {
            let reason = String(cString: strerror(errno))
            try? removeTree(staging)
            throw .io("cannot move the cluster aside: \(reason); the cluster is as it was")
        }
        guard rename(staging, dataDirectory) == 0 else {
            let reason = String(cString: strerror(errno))
            rename(kept, dataDirectory)
            try? removeTree(staging)
            throw .io("cannot move the snapshot into place: \(reason); the cluster is as it was")
        }
        return kept
    }

    /// Drops the cluster a restore replaced (renamed away first: while it exists under its own
    /// name, the next start rolls the restore back, see ``InterruptedOperations``).
    public func finishRestore(_ kept: String) { InterruptedOperations.discardTree(kept) }

    /// Puts the replaced cluster back (the restored one did not start).
    public func undoRestore(_ kept: String, into dataDirectory: String) throws(Failure) {
        if let problem = InterruptedOperations.putBack(kept, into: dataDirectory) { throw .io(problem) }
    }

    public func delete(_ name: String) throws(Failure) {
        let target = directory + "/" + name
        guard FileSystem.exists(target) else { throw .missing(name) }
        do { try removeTree(target) } catch { throw .io("\(error)") }
    }

    /// `2026-11-26T04:30:00Z`.
    static func now() -> String { utcTimestamp() }

    /// A default name from the time: `snap-20261126-043000`.
    public static func defaultName() -> String {
        "snap-" + now().filter { $0.isNumber || $0 == "T" }.replacing("T", with: "-")
    }
}
