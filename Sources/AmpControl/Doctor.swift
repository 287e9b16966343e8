#if canImport(Glibc)
import Glibc
#endif
import AmpConfig
import AmpPostgres
import AmpProtocol
import AmpRegistry
import AmpSystemd
import ArgumentParser
import Varlink
import SystemSupport

/// One finding of `ampctl doctor`.
struct Check {
    var name: String
    var ok: Bool
    var detail: String
    /// What to do when not ok.
    var fix: String?
    /// Not a failure, only information (e.g. lingering off).
    var advisory = false

    var json: JSONValue {
        var o: JSONObject = ["check": .string(name), "ok": .bool(ok), "detail": .string(detail), "advisory": .bool(advisory)]
        if let fix { o["fix"] = .string(fix) }
        return .object(o)
    }
}

struct DoctorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor", abstract: "Check binaries, the user manager, lingering, generator, registry, sockets and permissions.")
    @Flag(name: .customLong("json"), help: "Print the checks as JSON.") var json = false

    func run() async throws {
        try await guarded { () async throws(AmpctlError) -> ExitStatus in
            let env = Platform.current.environment
            let checks = await diagnose(env)
            if json {
                outJSON(.array(checks.map(\.json)))
            } else {
                let o = Output(environment: env)
                for c in checks {
                    let mark = c.ok ? o.green("✓") : (c.advisory ? o.yellow("!") : o.red("✗"))
                    out("\(mark) \(c.name): \(c.detail)")
                    if !c.ok, let fix = c.fix { out("    fix: \(fix)") }
                }
            }
            return checks.contains { !$0.ok && !$0.advisory } ? .failure : .success
        }
    }
}

func diagnose(_ env: [String: String]) async -> [Check] {
    var checks: [Check] = []
    // PostgreSQL binaries.
    do {
        let binaries = try PostgresBinaries.locate(explicit: nil, searchPath: env["PATH"])
        let version = try await binaries.version()
        let ok = version.majorNumber >= PostgresDocs.oldestSupportedMajor
        checks.append(Check(name: "postgresql", ok: ok, detail: "PostgreSQL \(version) in \(binaries.directory)",
                            fix: ok ? nil : "install PostgreSQL \(PostgresDocs.oldestSupportedMajor) or newer (apt install postgresql)"))
    } catch {
        checks.append(Check(name: "postgresql", ok: false, detail: error.message, fix: "apt install postgresql (or set bin_dir in .amp/config.toml)"))
    }
    // Baseline extensions (preloaded when present).
    if let binaries = try? PostgresBinaries.locate(explicit: nil, searchPath: env["PATH"]) {
        let names = ["pg_stat_statements", "auto_explain"]
        let found = binaries.availableLibraries(names)
        let missing = names.filter { !found.contains($0) }
        checks.append(Check(name: "baseline extensions", ok: missing.isEmpty,
                            detail: missing.isEmpty ? "pg_stat_statements and auto_explain in \(binaries.libraryDirectories[1])" : "missing: \(missing.joined(separator: ", ")) (servers start without them)",
                            fix: "apt install postgresql-contrib", advisory: true))
    }
    let psql = findExecutable("psql")
    checks.append(Check(name: "psql", ok: psql != nil, detail: psql ?? "not on PATH", fix: "apt install postgresql-client (needed by `ampctl psql`)", advisory: true))
    // ampd itself.
    let ampd = findExecutable("ampd")
    checks.append(Check(name: "ampd", ok: ampd != nil, detail: ampd ?? "not on PATH", fix: "make install (or make install-user and add ~/.local/bin to PATH)"))
    // Runtime directory.
    let runtime = Metadb.runtimeDirectory(environment: env)
    checks.append(Check(name: "runtime directory", ok: env["XDG_RUNTIME_DIR"] != nil, detail: runtime,
                        fix: "log in through a session that sets XDG_RUNTIME_DIR (sockets go to \(runtime) meanwhile)", advisory: true))
    // User manager.
    let manager = await userManagerRunning()
    checks.append(Check(name: "systemd user manager", ok: manager,
                        detail: manager ? "systemctl --user answers" : "systemctl --user does not reach a manager",
                        fix: "log in through a systemd session (or export XDG_RUNTIME_DIR=/run/user/$(id -u)); `ampd run` works without it"))
    // Lingering.
    if findExecutable("loginctl") != nil {
        let user = env["USER"] ?? "\(geteuid())"
        let (code, text) = await runCaptured("loginctl", ["show-user", user, "-p", "Linger", "--value"])
        let linger = code == 0 && text.trimmingWhitespace == "yes"
        checks.append(Check(name: "lingering", ok: linger, detail: code == 0 ? "Linger=\(text.trimmingWhitespace)" : "loginctl: \(text.trimmingWhitespace)",
                            fix: "loginctl enable-linger \(user)   (keeps amp@ services running without a login session)", advisory: true))
    }
    // Template and generator.
    let template = UnitRenderer.findTemplate(environment: env)
    checks.append(Check(name: "unit template", ok: template != nil, detail: template ?? "amp@.service not installed",
                        fix: "sudo make install (or make install-user)"))
    let generator = installedGenerator()
    let userUnits = userUnitDirectory(env)
    checks.append(Check(name: "generator", ok: generator != nil || userUnits != nil,
                        detail: generator.map { "user generator \($0)" } ?? "no user generator; units are written to \(userUnits ?? "?") by ampctl init",
                        fix: "sudo make install, or keep using ampctl init (it writes the units itself)"))
    // Registry.
    if let dir = Registry.defaultDirectory(environment: env) {
        let (entries, problems) = Registry(directory: dir).load()
        checks.append(Check(name: "registry", ok: problems.isEmpty, detail: "\(entries.count) project\(entries.count == 1 ? "" : "s") in \(dir)",
                            fix: problems.map(\.description).joined(separator: "; ")))
        for e in entries {
            // The default port's socket in the data directory, as ampd would choose it.
            let socket = SocketDirectory.socketPath(directory: e.base + "/.amp/metadb", port: 5432)
            let limit = SocketDirectory.maximumSocketPathLength
            checks.append(Check(
                name: "\(e.name): socket path", ok: socket.utf8.count <= limit,
                detail: socket.utf8.count <= limit ? "\(socket.utf8.count) bytes" : "\(socket.utf8.count) bytes: over \(limit), the socket goes to \(runtime)/amp/",
                fix: "nothing to do (automatic fallback); set socket_dir in .amp/config.toml to choose", advisory: true))
            var st = stat()
            let amp = e.base + "/.amp"
            if stat(amp, &st) != 0 {
                checks.append(Check(name: "\(e.name): amp dir", ok: false, detail: "\(amp) is missing", fix: "ampctl init '\(e.base)' (or ampctl forget \(e.name))"))
            } else {
                let mine = st.st_uid == geteuid()
                let priv = st.st_mode & 0o077 == 0
                checks.append(Check(name: "\(e.name): amp dir", ok: mine && priv,
                                    detail: "\(amp) owner \(st.st_uid), mode \(String(st.st_mode & 0o777, radix: 8))",
                                    fix: mine ? "chmod 700 '\(amp)'" : "it belongs to UID \(st.st_uid); run ampctl as that user"))
            }
        }
    }
    return checks
}
