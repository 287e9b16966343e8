import AmpDaemon

await AmpdMain.main()
