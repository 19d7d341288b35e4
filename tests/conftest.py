pytest_plugins = ["loadtest.pytest_plugin"]
