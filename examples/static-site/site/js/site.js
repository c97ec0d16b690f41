document.querySelector("h1").title = "built reproducibly";
