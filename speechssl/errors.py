"""The project's own exception base: the command line turns any :class:`SpeechSSLError` into
one ``error: <message>`` line and exit status 1 (``speechssl.cli.main``)."""


class SpeechSSLError(Exception):
    """Bad input the user can fix; the message names what is wrong (file, key, utterance)."""
