"""Built-in components, registered by name when ``shipyard.pipelines.component.builtins()`` first runs."""
