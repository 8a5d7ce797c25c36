import unittest

import logic


class GreetTest(unittest.TestCase):
    def test_adds_the_greeting(self):
        self.assertEqual(logic.greet([]), [("x-hello", "hello from {{name}}")])
        self.assertEqual(logic.greet([("a", "b")], "hi"), [("a", "b"), ("x-hello", "hi")])


if __name__ == "__main__":
    unittest.main()
