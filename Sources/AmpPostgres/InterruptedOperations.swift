#if canImport(Glibc)
import Glibc
#endif
import Logging
import SystemSupport

/// What a snapshot restore, a reset or an upgrade interrupted by a crash (SIGKILL of ampd or
/// ampctl, a power cut) leaves beside a project's cluster, and how the next start (or the
/// next `ampctl upgrade`) finishes or rolls back each: ``scan(dataDirectory:)`` lists them,
/// the pure ``plan(_:clusterMajor:rollbackDirectory:rollbackNames:)`` decides, and
/// ``recover(dataDirectory:rollbackDirectory:stopTimeout:logger:)`` acts.
///
/// The operations write these scratch copies next to the data directory (same file system, so
/// every step is a rename):
/// - `.restore-PID`: a snapshot copied, not yet in place (the restore had not swapped yet);
/// - `.before-restore-PID`, `.before-reset-PID`: the cluster a restore or reset moved aside,
///   kept until the new one has started; while it exists, that start was never confirmed;
/// - `.upgrade-N`: the new cluster pg_upgrade fills, or (after the swap, before the move to
///   `rollback/`) the old one;
/// - `.upgrade-source-N`: a prepared copy of the old cluster pg_upgrade reads;
/// - `.pitr-PID`, `.verify-PID`: a cluster a restore to a moment or `backup verify` was
///   replaying (always scratch: the swap into place is a rename of a finished one);
/// - `.removing-*`: a tree being removed (renamed first, so a half-removed tree never has a
///   name that a recovery would put back in place).
public enum InterruptedOperations {
    public enum Kind: Sendable, Equatable {
        case restoreStaging
        /// A restore to a moment or a backup check, replaying.
        case replayScratch
        case beforeRestore
        case beforeReset
        case upgradeWork
        case upgradeSource
        case removing

        /// What the user reads in `ampctl du` and the log.
        public var label: String {
            switch self {
            case .restoreStaging: "copy of an interrupted snapshot restore"
            case .replayScratch: "cluster of an interrupted restore to a moment or backup check"
            case .beforeRestore: "cluster kept by an interrupted snapshot restore"
            case .beforeReset: "cluster kept by an interrupted reset"
            case .upgradeWork: "cluster of an interrupted upgrade"
            case .upgradeSource: "prepared copy of an interrupted upgrade"
            case .removing: "tree whose removal was interrupted"
            }
        }
    }

    /// The kind of scratch copy a name in `.amp` is, or nil for anything else.
    public static func kind(of name: String) -> Kind? {
        func numbered(_ prefix: String) -> Bool {
            name.hasPrefix(prefix) && name.count > prefix.count && name.dropFirst(prefix.count).allSatisfy { $0.isASCII && $0.isNumber }
        }
        if numbered(".restore-") { return .restoreStaging }
        if numbered(".pitr-") || numbered(".verify-") { return .replayScratch }
        if numbered(".before-restore-") { return .beforeRestore }
        if numbered(".before-reset-") { return .beforeReset }
        if numbered(".upgrade-source-") { return .upgradeSource }
        if numbered(".upgrade-") { return .upgradeWork }
        if name.hasPrefix(".removing-") && name.count > ".removing-".count { return .removing }
        return nil
    }

    /// One scratch copy found beside the data directory.
    public struct Entry: Sendable, Equatable {
        public var path: String
        public var kind: Kind
        /// The major version in its `PG_VERSION`, when it holds a cluster.
        public var clusterMajor: Int?
        /// Its last change (seconds since the epoch).
        public var changed: Int

        public init(path: String, kind: Kind, clusterMajor: Int?, changed: Int) {
            self.path = path
            self.kind = kind
            self.clusterMajor = clusterMajor
            self.changed = changed
        }

        public var name: String { String(path.split(separator: "/").last ?? "") }
    }

    /// Whether `entry` may belong to an operation still running in the process `holder` that
    /// holds the project's lock (`nil`: nobody): its PID is in the name, or it is an upgrade's
    /// (ampctl upgrade holds the lock while it works).
    public static func mayBeInProgress(_ entry: Entry, lockHolder holder: Int32?) -> Bool {
        guard let holder else { return false }
        if entry.kind == .upgradeWork || entry.kind == .upgradeSource { return true }
        return entry.name.split(separator: "-").contains { $0 == "\(holder)" }
    }

    /// What to do with the scratch copies.
    public enum Action: Sendable, Equatable {
        /// A scratch copy nothing needs: removed.
        case remove(String)
        /// The operation never confirmed its new cluster: the kept one goes back in place.
        case rollBack(from: String)
        /// An upgrade swapped the clusters but did not move the old one to `rollback/` yet.
        case keepAsRollback(from: String, to: String)
        /// Nothing safe to decide: left for the user (`ampctl du` and `gc` list it).
        case leave(String, reason: String)
    }

    /// The major version in `directory/PG_VERSION` (`15`, `18`), when it holds a cluster.
    public static func clusterMajor(_ directory: String) -> Int? {
        FileContents.text(directory + "/PG_VERSION", limit: 64).flatMap { Int($0.trimmingWhitespace) }
    }

    /// The scratch copies beside `dataDirectory`, oldest first.
    public static func scan(dataDirectory: String) -> [Entry] {
        let parent = parentDirectory(dataDirectory)
        return listDirectory(parent).compactMap { name -> Entry? in
            guard let kind = kind(of: name) else { return nil }
            let path = parent + "/" + name
            var st = stat()
            guard lstat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else { return nil }
            return Entry(path: path, kind: kind, clusterMajor: clusterMajor(path), changed: Int(st.st_ctim.tv_sec))
        }.sorted { ($0.changed, $0.path) < ($1.changed, $1.path) }
    }

    /// Decides, without I/O, what becomes of each scratch copy, given the major version of the
    /// cluster in the data directory (nil: none there) and the names in `rollback/`.
    ///
    /// - Copies nothing refers to (`.restore-*`, `.upgrade-source-*`, `.removing-*`) go.
    /// - A cluster a restore or reset moved aside means its new cluster never confirmed a
    ///   start (the kept one is renamed away before it is removed): it goes back in place, and
    ///   whatever is in the data directory now goes. Two such copies, or one without a
    ///   cluster, are left for the user.
    /// - `.upgrade-N` holding an older major than the data directory is the old cluster after
    ///   the swap: it becomes the rollback copy (`rollback/metadb-OLD`), as the upgrade would
    ///   have made it; otherwise it is the unfinished new cluster and goes.
    public static func plan(_ entries: [Entry], clusterMajor current: Int?, rollbackDirectory: String, rollbackNames: Set<String>) -> [Action] {
        var actions: [Action] = []
        let kept = entries.filter { $0.kind == .beforeRestore || $0.kind == .beforeReset }
        let usable = kept.filter { $0.clusterMajor != nil }
        for entry in entries {
            switch entry.kind {
            case .restoreStaging, .replayScratch, .upgradeSource, .removing:
                actions.append(.remove(entry.path))
            case .beforeRestore, .beforeReset:
                if entry.clusterMajor == nil {
                    actions.append(.leave(entry.path, reason: "holds no cluster (no PG_VERSION)"))
                } else if usable.count > 1 {
                    actions.append(.leave(entry.path, reason: "one of \(usable.count) kept clusters; which one is current cannot be told"))
                } else {
                    actions.append(.rollBack(from: entry.path))
                }
            case .upgradeWork:
                if let old = entry.clusterMajor, let current, old < current {
                    let name = "metadb-\(old)"
                    if rollbackNames.contains(name) {
                        actions.append(.leave(entry.path, reason: "the PostgreSQL \(old) cluster of an upgrade, but \(rollbackDirectory)/\(name) exists already"))
                    } else {
                        actions.append(.keepAsRollback(from: entry.path, to: rollbackDirectory + "/" + name))
                    }
                } else {
                    actions.append(.remove(entry.path))
                }
            }
        }
        return actions
    }

    /// What ``recover(dataDirectory:rollbackDirectory:stopTimeout:logger:)`` did: one line per
    /// scratch copy finished, rolled back or removed, and one per copy left for the user.
    public struct Report: Sendable, Equatable {
        public var done: [String] = []
        public var left: [String] = []
    }

    /// Finishes or rolls back what interrupted operations left beside `dataDirectory`; call
    /// it under the project's lock, before the cluster starts. A PostgreSQL still serving the
    /// data directory (left by an ampd that was killed) is stopped first when a rollback
    /// replaces it. Each line of the report is also logged.
    public static func recover(dataDirectory: String, rollbackDirectory: String, stopTimeout: Duration, logger: Logger) async -> Report {
        var report = Report()
        let entries = scan(dataDirectory: dataDirectory)
        guard !entries.isEmpty else { return report }
        let actions = plan(entries, clusterMajor: clusterMajor(dataDirectory), rollbackDirectory: rollbackDirectory,
                           rollbackNames: Set(listDirectory(rollbackDirectory)))
        func done(_ line: String) {
            logger.notice("\(line)")
            report.done.append(line)
        }
        func left(_ line: String) {
            logger.warning("left for you: \(line)")
            report.left.append(line)
        }
        for action in actions {
            switch action {
            case .remove(let path):
                discardTree(path)
                done("removed \(path), left by an interrupted operation")
            case .rollBack(let kept):
                if FileSystem.exists(dataDirectory + "/postmaster.pid") {
                    do {
                        try await LeftoverCleanup.run(dataDirectory: dataDirectory, socketLockFile: nil, stopTimeout: stopTimeout, logger: logger)
                    } catch {
                        left("\(kept): kept; \(error.message)")
                        continue
                    }
                }
                if let problem = putBack(kept, into: dataDirectory) {
                    left(problem)
                } else {
                    done("an interrupted snapshot restore or reset was rolled back: the cluster from before it is back in \(dataDirectory); run the command again")
                }
            case .keepAsRollback(let from, let to):
                do {
                    try makeDirectories(rollbackDirectory)
                } catch {
                    left("\(from): \(error)")
                    continue
                }
                if rename(from, to) == 0 {
                    utimensat(AT_FDCWD, to, nil, 0)
                    done("an interrupted upgrade had swapped the clusters: the old one is kept in \(to) (`ampctl upgrade --finish` drops it, `--rollback` puts it back)")
                } else {
                    left("\(from): cannot move it to \(to): \(String(cString: strerror(errno)))")
                }
            case .leave(let path, let reason):
                left("\(path): \(reason); look at it, then remove it (`ampctl gc`)")
            }
        }
        return report
    }

    /// Puts the cluster at `kept` in place of `dataDirectory` (whatever is there goes); nil on
    /// success, else a message naming what to move by hand. Every step is a rename: a crash in
    /// between leaves either the kept copy or the data directory under its own name.
    public static func putBack(_ kept: String, into dataDirectory: String) -> String? {
        var aside: String? = nil
        if FileSystem.exists(dataDirectory) {
            let name = removingName(for: dataDirectory)
            guard rename(dataDirectory, name) == 0 else {
                return "cannot move \(dataDirectory) aside to put \(kept) back: \(String(cString: strerror(errno))); move \(kept) to \(dataDirectory) by hand"
            }
            aside = name
        }
        guard rename(kept, dataDirectory) == 0 else {
            let reason = String(cString: strerror(errno))
            if let aside { rename(aside, dataDirectory) }
            return "cannot move \(kept) back to \(dataDirectory): \(reason); move it there by hand"
        }
        if let aside { try? removeTree(aside) }
        return nil
    }

    /// Removes a tree after renaming it to `.removing-…` beside itself, so that a removal cut
    /// short never leaves a half tree under a name that means something.
    public static func discardTree(_ path: String) {
        guard FileSystem.exists(path) else { return }
        let name = path.split(separator: "/").last.map(String.init) ?? ""
        let target = name.hasPrefix(".removing-") ? path : removingName(for: path)
        if target != path, rename(path, target) != 0 {
            try? removeTree(path)
            return
        }
        try? removeTree(target)
    }

    /// A fresh `.removing-NAME-PID-N` beside `path`.
    static func removingName(for path: String) -> String {
        let parent = parentDirectory(path)
        let name = path.split(separator: "/").last.map(String.init) ?? "tree"
        var n = 0
        while true {
            let candidate = parent + "/.removing-\(name.trimmingPrefix("."))-\(getpid())-\(n)"
            if !FileSystem.exists(candidate) { return candidate }
            n += 1
        }
    }
}
