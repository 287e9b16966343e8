#if canImport(Glibc)
import Glibc
#endif
import SystemSupport

/// `ampctl push`/`pull`: one database copied between a project's local cluster and its
/// external server. The local cluster's `PG_VERSION` picks its binaries, the higher of both
/// servers' versions the client tools; the local cluster runs on a private socket for the copy
/// (the caller holds the project's lock), and ``DatabaseTransfer/copyDatabase`` does the copy
/// into a temporary database renamed at the end.
public struct ClusterTransfer: Sendable {
    public enum Direction: String, Sendable {
        /// The local cluster to the external server.
        case push
        /// The external server to the local cluster.
        case pull
    }

    /// Why a transfer did not happen; the caller words it for its user.
    public enum Failure: Error {
        /// No `PG_VERSION` in the data directory.
        case noLocalCluster
        /// The local cluster's major version has no installed binaries.
        case binariesMissing(major: Int)
        /// The external server did not answer (`permanent`: a refusal, such as a password).
        case unreachable(LibPQError, permanent: Bool)
        case version(PostgresError)
        case privateServer(PrivateServer.Failure)
        case transfer(TransferError)
    }

    public var direction: Direction
    public var dataDirectory: String
    public var remote: ExternalServer
    public var database: String
    /// `[postgres] bin_dir`, tried first for the local cluster's binaries.
    public var binDirectory: String?
    /// `--bin-dir` of the client tools.
    public var toolsDirectory: String?
    public var searchPath: String
    public var jobs: Int
    public var replace: Bool
    public var temporarySuffix: String
    /// Where the private server's socket goes, and where the dump is kept during the copy.
    public var socketDirectory: String
    public var scratch: String

    public init(direction: Direction, dataDirectory: String, remote: ExternalServer, database: String, binDirectory: String?, toolsDirectory: String?,
                searchPath: String, jobs: Int, replace: Bool, temporarySuffix: String, socketDirectory: String, scratch: String) {
        self.direction = direction
        self.dataDirectory = dataDirectory
        self.remote = remote
        self.database = database
        self.binDirectory = binDirectory
        self.toolsDirectory = toolsDirectory
        self.searchPath = searchPath
        self.jobs = jobs
        self.replace = replace
        self.temporarySuffix = temporarySuffix
        self.socketDirectory = socketDirectory
        self.scratch = scratch
    }

    /// The local cluster's major version, from its `PG_VERSION`; nil when there is none.
    public var localMajor: Int? { FileContents.text(dataDirectory + "/PG_VERSION", limit: 64).flatMap { Int($0.trimmingWhitespace) } }

    /// Copies the database; `phase` hears each step ("starting the local cluster …", then
    /// ``DatabaseTransfer``'s). Returns the copy's size in bytes.
    public func run(phase: (String) -> Void) async throws(Failure) -> Int64 {
        guard let localMajor else { throw .noLocalCluster }
        guard let binaries = await PostgresBinaries.forMajor(localMajor, preferring: binDirectory.map { [$0] } ?? []) else {
            throw .binariesMissing(major: localMajor)
        }
        let answer: ExternalServer.Answer
        switch remote.probe(database: "postgres") {
        case .success(let a): answer = a
        case .failure(let e): throw .unreachable(e, permanent: ExternalServer.isPermanent(e))
        }
        let remoteMajor = Int(answer.version.prefix { $0.isNumber }) ?? 0
        let tools: ClientTools
        do throws(TransferError) {
            tools = try await ClientTools.find("pg_restore", atLeast: max(localMajor, remoteMajor), explicit: toolsDirectory, searchPath: searchPath)
        } catch {
            throw .transfer(error)
        }
        let application = "amp-\(direction.rawValue)"
        let server = remote
        let far = DatabaseServer(display: server.display) { server.conninfo(database: $0, application: application) }
        phase("starting the local cluster (PostgreSQL \(localMajor)) on a private socket")
        let version: PostgresVersion
        do throws(PostgresError) { version = try await binaries.version() } catch { throw .version(error) }
        let outcome: Result<Int64, TransferError>
        do throws(PrivateServer.Failure) {
            outcome = try await PrivateServer.with(dataDirectory: dataDirectory, binaries: binaries, version: version, socketDirectory: socketDirectory) { handle in
                let local = DatabaseServer.socket(display: "the local cluster", directory: handle.socketDirectory, port: handle.port,
                                                  user: handle.user, application: application)
                let (from, to) = direction == .push ? (local, far) : (far, local)
                do throws(TransferError) {
                    return .success(try await DatabaseTransfer.copyDatabase(
                        database, from: from, to: to, temporarySuffix: temporarySuffix, tools: tools, jobs: jobs, replace: replace,
                        scratch: scratch, environment: ["PATH": "/usr/bin:/bin", "LC_ALL": "C", "PGCONNECT_TIMEOUT": "10"], phase: phase))
                } catch {
                    return .failure(error)
                }
            }
        } catch {
            throw .privateServer(error)
        }
        do throws(TransferError) { return try outcome.get() } catch { throw .transfer(error) }
    }
}
