"""Built-in components, registered by name when ``shipyard.pipelines.components.builtins()`` first runs."""
