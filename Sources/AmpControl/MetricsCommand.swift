import AmpProtocol
import ArgumentParser
import SystemSupport

/// `ampctl metrics`: the project's metrics in the Prometheus text format, as `[metrics]
/// listen` serves them, through the varlink API (no listener needed).
struct MetricsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "metrics",
        abstract: "Print the project's metrics in the Prometheus text format (PostgreSQL's, with postgres_exporter's names, and amp's own).",
        discussion: """
            The same text [metrics] listen = "127.0.0.1:9187" serves at /metrics for Prometheus; see amp.toml(5). \
            With --json: {"text": "..."}.
            """)
    @Argument(help: ArgumentHelp("Project name (or --project NAME; default: the nearest .amp above the current directory).", valueName: "name"), completion: projectCompletion)
    var positionalName: String?
    /// The project: `--project NAME` or the first argument.
    var name: String? { options.selection.project ?? positionalName }
    func validate() throws { try options.selection.check(positionalName) }
    @OptionGroup var options: ProjectOptions

    func run() async throws {
        try await guarded { () async throws(AmpctlError) -> ExitStatus in
            let text = try await withProject(name, address: options.address) { client throws(MetadbClientError) in try await client.metrics() }
            if options.json { outJSON(.object(["text": .string(text)])) } else { _ = writeAll(1, Array(text.utf8)) }
            return .success
        }
    }
}
