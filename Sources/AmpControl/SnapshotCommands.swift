import AmpProtocol
import ArgumentParser
import SystemSupport
import Varlink

struct SnapshotCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "snapshot",
        abstract: "Snapshots of the project's cluster in .amp/snapshots (taken and restored by ampd).",
        subcommands: [SnapshotCreateCommand.self, SnapshotListCommand.self, SnapshotRestoreCommand.self, SnapshotDeleteCommand.self])
}

/// The JSON of a snapshot, as the varlink reply has it.
func snapshotJSON(_ s: MetadbSnapshot) -> JSONValue {
    .object((try? JSONValueEncoder().encodeObject(s)) ?? [:])
}

struct SnapshotCreateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create", abstract: "Take a snapshot: PostgreSQL stops for the copy (a reflink where possible) and starts again.")
    @Argument(help: "Snapshot name (default: snap-DATE-TIME).") var snapshot: String?
    var name: String? { options.selection.project }
    @OptionGroup var options: ProjectOptions

    func run() async throws {
        try await guarded { () async throws(AmpctlError) -> ExitStatus in
            if let snapshot, let reason = Metadb.snapshotNameProblem(snapshot) { throw AmpctlError(.usage, "snapshot name \(snapshot): \(reason)") }
            err("ampctl: taking snapshot \(snapshot ?? "(named by the time)"); connections are ended while PostgreSQL stops")
            let s = try await withProject(name, address: options.address) { client throws(MetadbClientError) in try await client.createSnapshot(snapshot) }
            if options.json { outJSON(snapshotJSON(s)) } else {
                err("ampctl: took snapshot \(s.name) (\(humanBytes(s.sizeBytes)), PostgreSQL \(s.postgresVersion)\(s.gitCommit.map { ", git \($0.prefix(12))" } ?? "")); restore it with `ampctl snapshot restore \(s.name)`")
            }
            return .success
        }
    }
}

struct SnapshotListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List the snapshots.")
    var name: String? { options.selection.project }
    @OptionGroup var options: ProjectOptions

    func run() async throws {
        try await guarded { () async throws(AmpctlError) -> ExitStatus in
            let list = try await withProject(name, address: options.address) { client throws(MetadbClientError) in try await client.snapshots() }
            if options.json { outJSON(.array(list.map(snapshotJSON))); return .success }
            let w = max(4, list.map(\.name.count).max() ?? 0)
            out("NAME".padding(toLength: w) + "  CREATED               SIZE       PG  GIT")
            for s in list {
                out(s.name.padding(toLength: w) + "  " + s.created.padding(toLength: 20) + "  " + humanBytes(s.sizeBytes).padding(toLength: 9) + "  "
                    + s.postgresVersion.padding(toLength: 2) + "  " + (s.gitCommit.map { String($0.prefix(12)) } ?? "-"))
            }
            return .success
        }
    }
}

struct SnapshotRestoreCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore", abstract: "Replace the cluster with a snapshot (asks first; the current one is kept until the restored one is up).")
    @Argument(help: "Snapshot name.") var snapshot: String
    var name: String? { options.selection.project }
    @Flag(help: "Do not ask first.") var yes = false
    @OptionGroup var options: ProjectOptions

    func run() async throws {
        try await guarded { () async throws(AmpctlError) -> ExitStatus in
            try confirm("Replace the cluster with snapshot \(snapshot)? Changes made since it was taken are lost, and connections are ended.", yes: yes)
            try await withProject(name, address: options.address) { client throws(MetadbClientError) in try await client.restoreSnapshot(snapshot) }
            err("ampctl: restored snapshot \(snapshot)")
            return .success
        }
    }
}

struct SnapshotDeleteCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "delete", abstract: "Delete a snapshot (asks first).")
    @Argument(help: "Snapshot name.") var snapshot: String
    var name: String? { options.selection.project }
    @Flag(help: "Do not ask first.") var yes = false
    @OptionGroup var options: ProjectOptions

    func run() async throws {
        try await guarded { () async throws(AmpctlError) -> ExitStatus in
            try confirm("Delete snapshot \(snapshot)? It cannot be restored afterwards.", yes: yes)
            try await withProject(name, address: options.address) { client throws(MetadbClientError) in try await client.deleteSnapshot(snapshot) }
            err("ampctl: deleted snapshot \(snapshot)")
            return .success
        }
    }
}

struct ResetCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reset",
        abstract: "Recreate the project's cluster: empty, with the seed scripts (--seed), or from a snapshot (--snapshot NAME); asks first.")
    @Flag(name: .customLong("seed"), help: "Run the seed scripts ([postgres] seed) in the new cluster.") var seed = false
    @Option(name: .customLong("snapshot"), help: ArgumentHelp("Restore this snapshot instead.", valueName: "NAME")) var snapshot: String?
    var name: String? { options.selection.project }
    @Flag(help: "Do not ask first.") var yes = false
    @OptionGroup var options: ProjectOptions

    func validate() throws {
        if seed && snapshot != nil { throw ValidationError("--seed and --snapshot are two ways to reset; give one") }
    }

    func run() async throws {
        try await guarded { () async throws(AmpctlError) -> ExitStatus in
            let what = snapshot.map { "snapshot \($0)" } ?? (seed ? "a new cluster with the seed scripts" : "a new, empty cluster")
            try confirm("Replace every database of the project with \(what)? The current data is lost (take a snapshot first: ampctl snapshot create), and connections are ended.", yes: yes)
            try await withProject(name, address: options.address) { client throws(MetadbClientError) in
                if let snapshot { try await client.restoreSnapshot(snapshot) } else { try await client.resetCluster(seed: seed) }
            }
            err("ampctl: the cluster is now \(what)")
            return .success
        }
    }
}
