#if canImport(Glibc)
import Glibc
#endif
import AmpConfig
import AmpRegistry
import SystemSupport

/// Makes a unit directory hold exactly the rendering of the registry: writes the files of
/// every entry and removes amp's own files (recognised by their header or link target) for
/// names no longer registered or no longer autostarted. Nothing else is touched.
public enum UnitDirectorySync {
    /// Returns the problems met; an entry that fails does not stop the others.
    public static func sync(_ entries: [RegistryEntry], renderer: UnitRenderer, directory: String) -> [RegistryProblem] {
        var problems: [RegistryProblem] = []
        var wanted = Set<String>()
        for entry in entries {
            let files = renderer.render(entry)
            wanted.formUnion(files.map(\.path))
            do { try UnitWriter.write(files, into: directory) } catch { problems.append(error) }
        }
        let prefix = renderer.templatePrefix + "@"
        for name in listDirectory(directory) where name.hasPrefix(prefix) && name.hasSuffix(".service.d") {
            let relative = name + "/" + UnitRenderer.dropInName
            let path = directory + "/" + relative
            guard !wanted.contains(relative), FileContents.text(path)?.hasPrefix(UnitRenderer.headerMarker) == true else { continue }
            unlink(path)
            rmdir(directory + "/" + name)  // only when empty: drop-ins of the user's own stay
        }
        let wants = directory + "/default.target.wants"
        for name in listDirectory(wants) where name.hasPrefix(prefix) && name.hasSuffix(".service") {
            let relative = "default.target.wants/" + name
            guard !wanted.contains(relative) else { continue }
            var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
            let n = readlink(wants + "/" + name, &buffer, buffer.count - 1)
            guard n > 0 else { continue }
            let target = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if target.hasSuffix("/" + renderer.templatePrefix + "@.service") { unlink(wants + "/" + name) }
        }
        return problems
    }
}

/// `amp-generator`: a systemd user generator (systemd.generator(7),
/// <https://www.freedesktop.org/software/systemd/man/252/systemd.generator.html>).
///
/// Called by the user manager on start-up and every `daemon-reload` with the output
/// directories as arguments; writes, into the first (normal) one only, the rendering of every
/// valid registry entry. Fast (reads a few small files), no IPC, one bad entry is reported on
/// standard error and skipped. Exit status 0 unless the output directory is unusable.
public enum Generator {
    public static let usage = """
        usage: amp-generator NORMAL-DIR [EARLY-DIR LATE-DIR]
               amp-generator --sync-user-units [UNIT-DIR]

        As a systemd user generator (installed in /usr/lib/systemd/user-generators/ or
        /usr/local/lib/systemd/user-generators/), writes for every amp dir in the registry
        ($XDG_CONFIG_HOME/amp/registry/NAME.toml) a drop-in that makes amp@NAME.service run it,
        and a default.target.wants/ link for entries with autostart = true.

        --sync-user-units writes the same files into UNIT-DIR (default ~/.config/systemd/user),
        for installs without root, where no user generator can be installed, and removes amp's
        files for entries that are gone. Then run: systemctl --user daemon-reload
        """

    /// Runs the generator; returns the exit status.
    public static func main(arguments: [String], environment: [String: String]) -> Int32 {
        func say(_ text: String) { printError("amp-generator: \(text)") }
        if arguments.contains("--help") || arguments.contains("-h") {
            print(usage)
            return 0
        }
        let sync = arguments.first == "--sync-user-units"
        if !sync, environment["SYSTEMD_SCOPE"] == "system" {
            say("this is a user generator, but it was run by the system manager; install it in a user-generators directory")
            return 0
        }
        guard let registryDirectory = Registry.defaultDirectory(environment: environment) else {
            say("no home directory (HOME unset and no passwd entry); nothing generated")
            return 0
        }
        let output: String
        if sync {
            guard let dir = arguments.dropFirst().first ?? Registry.configHome(environment: environment).map({ $0 + "/systemd/user" }) else {
                say("no home directory to find ~/.config/systemd/user in; pass the unit directory")
                return 1
            }
            output = dir
        } else {
            guard let dir = arguments.first, dir.hasPrefix("/") else {
                printError(usage)
                return 64
            }
            output = dir
        }
        let template = UnitRenderer.findTemplate(environment: environment) ?? "/usr/lib/systemd/user/amp@.service"
        let renderer = UnitRenderer(templatePath: template, writer: sync ? "amp-generator --sync-user-units" : "amp-generator", environment: environment)
        let (entries, problems) = Registry(directory: registryDirectory).load()
        for p in problems { say("\(p) (skipped)") }
        var seen: [String: String] = [:]
        for e in entries {
            if let other = seen[e.base] {
                say("\(e.file ?? e.name): amp@\(other) and amp@\(e.name) both name \(e.base); only one can run at a time (remove one entry)")
            }
            seen[e.base] = e.name
        }
        let writeProblems: [RegistryProblem]
        if sync {
            writeProblems = UnitDirectorySync.sync(entries, renderer: renderer, directory: output)
        } else {
            var collected: [RegistryProblem] = []
            for entry in entries {
                do { try UnitWriter.write(renderer.render(entry), into: output) } catch { collected.append(error) }
            }
            writeProblems = collected
        }
        for p in writeProblems { say("\(p)") }
        if sync {
            say("\(entries.count) amp dir\(entries.count == 1 ? "" : "s") rendered into \(output); run: systemctl --user daemon-reload")
        }
        return writeProblems.isEmpty || writeProblems.count < entries.count || entries.isEmpty ? 0 : 1
    }
}

