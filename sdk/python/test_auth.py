"""With auth on, the SDK's API key is the JWT: it goes out as
`Authorization: Bearer`, where rill reads its token. Starting needs
`generate`; a response belongs to the subject that started it."""

import unittest

import openai
from openai import OpenAI

from support import Rill, jwt

SECRET = "test-only-secret-0123456789abcdef"
rill = None


def setUpModule():
    global rill
    rill = Rill("--auth-jwt-secret", SECRET, "--mock-delay-ms", "2")


def tearDownModule():
    rill.stop()


def client(key):
    return OpenAI(base_url=rill.base_url, api_key=key, max_retries=0)


ALICE = jwt(SECRET, {"sub": "alice", "rill": {"generate": True}})
BOB = jwt(SECRET, {"sub": "bob", "rill": {"generate": True}})
ASK = [{"role": "user", "content": "hi"}]


class Auth(unittest.TestCase):
    def test_the_api_key_carries_the_token(self):
        with client(ALICE) as c:
            r = c.chat.completions.create(model="llama3.1", messages=ASK)
            self.assertTrue(r.choices[0].message.content.startswith('You asked: "hi"'))
            self.assertEqual(c.models.list().data[0].id, "llama3.1")

    def test_no_token_a_bad_token_or_no_right_is_refused(self):
        with client("sk-not-a-jwt") as c, self.assertRaises(openai.AuthenticationError) as e:
            c.chat.completions.create(model="llama3.1", messages=ASK)
        self.assertEqual(e.exception.type, "authentication_error")
        reader = jwt(SECRET, {"sub": "carol", "rill": {"subscribe": ["news"]}})
        with client(reader) as c, self.assertRaises(openai.PermissionDeniedError):
            c.responses.create(model="llama3.1", input="hi")

    def test_a_response_is_its_starters(self):
        with client(ALICE) as alice, client(BOB) as bob:
            r = alice.responses.create(model="llama3.1", input="hi", background=True)
            with self.assertRaises(openai.PermissionDeniedError):
                bob.responses.retrieve(r.id)
            with self.assertRaises(openai.PermissionDeniedError):
                bob.responses.cancel(r.id)
            with alice.responses.stream(response_id=r.id) as s:
                self.assertEqual(s.get_final_response().status, "completed")


if __name__ == "__main__":
    unittest.main()
