/// How `CREATE DATABASE … TEMPLATE` copies a database (PostgreSQL 15+ has two strategies).
///
/// `WAL_LOG` (15's default) writes every block through the WAL: no checkpoint, best for small
/// databases. `FILE_COPY` copies the files and forces two checkpoints: that fixed cost is worth
/// it when the template is big, because WAL_LOG's cost grows with every block.
/// See <https://www.postgresql.org/docs/15/sql-createdatabase.html>.
public enum CloneStrategy: String, Sendable, Equatable {
    case walLog = "WAL_LOG"
    case fileCopy = "FILE_COPY"

    /// From this template size on, FILE_COPY.
    public static let fileCopyFromBytes: Int64 = 256 << 20

    /// The strategy for a template of `sizeBytes` on PostgreSQL `serverMajor`; nil before 15
    /// (no STRATEGY clause there: the files are copied).
    public static func choose(sizeBytes: Int64, serverMajor: Int) -> CloneStrategy? {
        guard serverMajor >= 15 else { return nil }
        return sizeBytes >= fileCopyFromBytes ? .fileCopy : .walLog
    }
}
