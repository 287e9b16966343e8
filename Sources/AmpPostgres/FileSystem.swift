#if canImport(Glibc)
import Glibc
#endif
import ChildProcess
import SystemSupport

/// Small, error-reporting file-system helpers. Every error names the path (IC-8).
enum FileSystem {
    static func readText(_ path: String) -> String? { FileContents.text(path) }

    static func exists(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0
    }

    static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    static func owner(_ path: String) -> uid_t? {
        var st = stat()
        return stat(path, &st) == 0 ? st.st_uid : nil
    }

    static func readLink(_ path: String) -> String? {
        var buffer = [CChar](repeating: 0, count: 4097)
        let n = readlink(path, &buffer, 4096)
        guard n >= 0 else { return nil }
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Creates `path` with `mode` (and its parents with 0700) unless it exists as a directory.
    static func makeDirectory(_ path: String, mode: mode_t = 0o700) throws(PostgresError) {
        if isDirectory(path) { return }
        let parent = parentDirectory(path)
        if parent != path && !isDirectory(parent) { try makeDirectory(parent, mode: 0o700) }
        if mkdir(path, mode) != 0 && errno != EEXIST {
            throw ioError("cannot create directory \(path)", errno: errno)
        }
    }

    static func remove(_ path: String) throws(PostgresError) {
        if unlink(path) != 0 && errno != ENOENT {
            throw ioError("cannot remove \(path)", errno: errno)
        }
    }

    static func removeTree(_ path: String) throws(PostgresError) {
        do {
            try SystemSupport.removeTree(path)
        } catch {
            throw PostgresError(.dataDirectoryUnusable, "\(error); remove it by hand")
        }
    }

    static func chown(_ path: String, to credentials: (uid: uid_t, gid: gid_t), recursive: Bool) throws(PostgresError) {
        if lchown(path, credentials.uid, credentials.gid) != 0 {
            throw ioError("cannot change the owner of \(path)", errno: errno)
        }
        guard recursive, isDirectory(path) else { return }
        for name in listDirectory(path) {
            try chown(path + "/" + name, to: credentials, recursive: true)
        }
    }

    static func parentDirectory(_ path: String) -> String { SystemSupport.parentDirectory(path) }

    static func baseName(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return path }
        return String(path[path.index(after: slash)...])
    }

    static func ioError(_ what: String, errno code: Int32) -> PostgresError {
        let reason = String(cString: strerror(code))
        let fix: String
        switch code {
        case EACCES, EPERM: fix = "check its owner and permissions"
        case ENOSPC: fix = "free some disk space"
        case EROFS: fix = "use a writable location"
        default: fix = "check the path"
        }
        return PostgresError(.dataDirectoryUnusable, "\(what): \(reason); \(fix)")
    }
}


/// Copies of whole clusters (base backups into a restore's directory, and the like).
public enum ClusterFiles {
    /// Puts a prepared cluster (`prepared`) in place of a stopped one (or of none): the
    /// current cluster, if any, moves to `aside` first (its directory made), by renames only.
    /// - Returns: where the replaced cluster was kept, nil when there was none.
    /// - Throws: what failed, in words that say where each cluster is now.
    public static func putInPlace(_ prepared: String, dataDirectory: String, aside: String) throws(PostgresError) -> String? {
        var kept: String? = nil
        if access(dataDirectory, F_OK) == 0 {
            let parent = String(aside[..<(aside.lastIndex(of: "/") ?? aside.endIndex)])
            do { try makeDirectories(parent) } catch {
                throw PostgresError(.dataDirectoryUnusable, "cannot create \(parent): \(error); the cluster is as it was")
            }
            guard rename(dataDirectory, aside) == 0 else {
                throw PostgresError(.dataDirectoryUnusable, "cannot move the cluster aside to \(aside): \(String(cString: strerror(errno))); the cluster is as it was")
            }
            kept = aside
        }
        guard rename(prepared, dataDirectory) == 0 else {
            throw PostgresError(.dataDirectoryUnusable, "cannot move the new cluster into \(dataDirectory): \(String(cString: strerror(errno))); it is in \(prepared)"
                + (kept.map { ", the previous one in \($0)" } ?? ""))
        }
        return kept
    }

    /// Copies the directory tree `source` to the new directory `target` (reflinks where the
    /// file system shares extents, else a sparse copy), owned by `owner` when given (ampd as
    /// root copying for the project's account).
    /// - Returns: whether any file was reflinked.
    @discardableResult
    public static func copy(_ source: String, to target: String, owner: ProcessCredentials?) throws(PostgresError) -> Bool {
        var reflinked = false
        try ClusterTemplateCache.copyTree(source, to: target, reflinked: &reflinked)
        if let owner, geteuid() == 0 { try FileSystem.chown(target, to: (owner.uid, owner.gid), recursive: true) }
        return reflinked
    }
}
