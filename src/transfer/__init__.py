"""transfer: learn low-light enhancement from lowsim data, fine-tune on real pairs."""
