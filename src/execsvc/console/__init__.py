"""The web console: static assets served by ``execsvc serve`` at ``/console``, talking to the public API only."""
