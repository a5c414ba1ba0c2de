// Preloaded into Azurite by tests/azure.py (`node --require`): the emulator exits when the
// test session closes its standard input, as the S3 and GCS ones do, so a pytest worker
// that is killed leaves no Azurite behind.
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
