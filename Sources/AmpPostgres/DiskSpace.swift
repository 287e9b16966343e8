#if canImport(Glibc)
import Glibc
#endif
import CFiles

/// Free space, and how amp recognises and explains a full disk.
public enum DiskSpace {
    /// What a new cluster needs free (initdb writes ~40 MB, including a 16 MB WAL segment).
    public static let newClusterBytes: UInt64 = 64 << 20
    /// What a start needs free at least: room for a new WAL segment (16 MB by default).
    public static let startBytes: UInt64 = 16 << 20
    /// What a running server that reported a full disk needs free to be counted healthy again:
    /// two WAL segments. Lower than ``newClusterBytes``: the project's archive and backups often
    /// share the disk, and a server that can write its next segments is serving again.
    public static let runningBytes: UInt64 = 32 << 20

    /// Bytes available to an unprivileged user on the file system holding `path` (the
    /// nearest existing ancestor is asked when `path` does not exist yet).
    public static func available(at path: String) -> UInt64? {
        var candidate = path
        while true {
            var st = statvfs()
            if statvfs(candidate, &st) == 0 {
                let (bytes, overflow) = UInt64(st.f_bavail).multipliedReportingOverflow(by: UInt64(st.f_frsize))
                return overflow ? UInt64.max : bytes
            }
            guard errno == ENOENT || errno == ENOTDIR, candidate != "/", !candidate.isEmpty else { return nil }
            candidate = FileSystem.parentDirectory(candidate)
        }
    }

    /// Whether the file system holding directory `path` shares extents (reflinks, as on XFS
    /// with reflink=1 and Btrfs): measured by cloning a block between two unnamed files there.
    public static func sharesExtents(at path: String) -> Bool { amp_can_reflink(path) == 1 }

    /// Whether PostgreSQL's or initdb's output says the disk is full.
    public static func indicatesFull(_ lines: [String]) -> Bool {
        lines.contains { $0.contains("No space left on device") || $0.contains("Check free disk space") }
    }

    /// `20 MB` (whole megabytes, rounded down).
    public static func megabytes(_ bytes: UInt64) -> String { "\(bytes >> 20) MB" }

    /// "needs 64 MB free on /path, has 20 MB"
    public static func shortfall(needs: UInt64, on path: String) -> String {
        let has = available(at: path).map(megabytes) ?? "an unknown amount"
        return "needs \(megabytes(needs)) free on \(path), has \(has)"
    }
}
