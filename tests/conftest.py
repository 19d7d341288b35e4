pytest_plugins = ["loadtest.verdict.pytest_plugin"]
